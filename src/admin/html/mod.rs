//! The browsable API: a browser asking for a page gets every JSON answer
//! (resource, collection or error) wrapped in a self-contained HTML page,
//! and `GET /` gets a dashboard (Rancher API spec, "HTML UI" and
//! "Format").
//!
//! The rest of the admin endpoint knows nothing of HTML: [`layer`] sits
//! around the routes and rewrites their JSON answers. The page carries the
//! JSON as inert data and one static script renders it; the Content
//! Security Policy allows that script (by its hash), its stylesheet and
//! same-origin requests, and nothing else.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::response::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::urls;

/// The largest JSON answer turned into a page. Our largest lists are a
/// few MB; the page may grow up to six times this when escaped.
const MAX_JSON: usize = 64 << 20;

/// The most Accept media ranges looked at; a real browser sends under 10.
const MAX_RANGES: usize = 64;

const CSS: &str = include_str!("ui.css");

/// The inline script of the API pages; `common.js` first, since the others
/// call its helpers.
const UI_JS: &str =
    concat!(include_str!("common.js"), include_str!("forms.js"), include_str!("ui.js"));

/// The inline script of the dashboard.
const DASHBOARD_JS: &str = concat!(include_str!("common.js"), include_str!("dashboard.js"));

/// The CSP of a page whose one script is `UI_JS` or `DASHBOARD_JS`,
/// computed once: the hashes never change while the binary runs.
static UI_CSP: LazyLock<HeaderValue> = LazyLock::new(|| csp(UI_JS));
static DASHBOARD_CSP: LazyLock<HeaderValue> = LazyLock::new(|| csp(DASHBOARD_JS));

fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// Only our own script and style run, requests go to this origin only,
/// nothing loads from elsewhere, forms post here, and no other site may
/// frame the page (its buttons change volumes).
fn csp(script: &str) -> HeaderValue {
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        sha256_source(script),
        sha256_source(CSS),
    );
    HeaderValue::try_from(policy).expect("a CSP of ASCII")
}

/// Whether the request should get a page rather than JSON: when Accept
/// prefers `text/html` over JSON (equal weights go to the one named
/// first), or, naming neither, when it accepts `*/*` from a User-Agent
/// that says "mozilla" (the spec's test for a browser; curl and HTTP
/// libraries do not say it).
pub fn wants_html(headers: &HeaderMap) -> bool {
    // (weight, position) of the best range of each kind.
    let mut html: Option<(f32, usize)> = None;
    let mut json: Option<(f32, usize)> = None;
    let mut any = false;
    let mut html_refused = false;
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(MAX_RANGES);
    for (i, range) in ranges.enumerate() {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            // An unreadable weight (NaN, 7) counts as the default.
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(1.0);
        let is = |name: &str| media.eq_ignore_ascii_case(name);
        let is_html = is("text/html") || is("application/xhtml+xml");
        if q <= 0.0 {
            html_refused |= is_html;
            continue;
        }
        let slot = if is_html {
            &mut html
        } else if is("application/json") || is("text/json") {
            &mut json
        } else {
            any |= is("*/*");
            continue;
        };
        if slot.is_none_or(|(best, _)| q > best) {
            *slot = Some((q, i));
        }
    }
    match (html, json) {
        (Some((hq, hi)), Some((jq, ji))) => hq > jq || (hq == jq && hi < ji),
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => any && !html_refused && from_a_browser(headers),
    }
}

fn from_a_browser(headers: &HeaderMap) -> bool {
    let agent = headers.get(header::USER_AGENT).map_or(&b""[..], HeaderValue::as_bytes);
    agent.windows(7).any(|w| w.eq_ignore_ascii_case(b"mozilla"))
}

/// The middleware: a GET that wants a page gets its JSON answer as one
/// (status and headers kept), and `GET /` the dashboard. Everything else
/// passes untouched. It must sit inside the basic-auth layer, which then
/// guards the pages as it guards the JSON. `(trust_forwarded, tls)` are
/// the admin's, so that the page finds the schemas where `X-API-Schemas`
/// (added outside this layer) says they are.
pub async fn layer(
    State((trust_forwarded, tls)): State<(bool, bool)>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::GET || !wants_html(req.headers()) {
        let mut resp = next.run(req).await;
        vary(resp.headers_mut());
        return resp;
    }
    let base = urls::base_url(req.headers(), trust_forwarded, tls);
    if req.uri().path() == "/" {
        return dashboard(&base);
    }
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let json = match axum::body::to_bytes(body, MAX_JSON).await {
        Ok(json) => json,
        Err(e) => {
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            tracing::error!(error = %e, "admin answer too large for a page");
            let message = format!(
                "this answer is larger than {} MiB or failed half-way ({e}); \
                 ask for it with \"Accept: application/json\"",
                MAX_JSON >> 20
            );
            let error = serde_json::json!({
                "type": "error", "status": 500, "code": "Internal", "message": message,
            });
            serde_json::to_vec(&error).unwrap_or_default().into()
        }
    };
    page_response(parts, &UI_CSP, UI_JS, &json, &format!("{base}/v1/schemas"))
}

/// The dashboard: a page with no data of its own, whose script polls the
/// collections.
fn dashboard(base: &str) -> Response {
    let (parts, ()) = Response::new(()).into_parts();
    page_response(parts, &DASHBOARD_CSP, DASHBOARD_JS, b"null", &format!("{base}/v1/schemas"))
}

fn page_response(
    mut parts: Parts,
    csp: &HeaderValue,
    script: &str,
    json: &[u8],
    schemas: &str,
) -> Response {
    let schemas = serde_json::to_vec(schemas).unwrap_or_default();
    let body = page(script, &[("schemas", &schemas), ("data", json)]);
    let h = &mut parts.headers;
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // The body changed length; hyper counts the new one.
    h.remove(header::CONTENT_LENGTH);
    h.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    vary(h);
    (parts, Body::from(body)).into_response()
}

/// The same URL answers JSON or a page depending on these headers, so a
/// cache must key on them.
fn vary(h: &mut HeaderMap) {
    h.insert(header::VARY, HeaderValue::from_static("Accept, User-Agent"));
}

/// The page: the JSON blocks as inert data, then the script that renders
/// them. The script and style are inserted byte for byte, since their
/// hashes in the CSP must match.
fn page(script: &str, blocks: &[(&str, &[u8])]) -> Vec<u8> {
    let size: usize = blocks.iter().map(|(_, j)| j.len() + j.len() / 8 + 64).sum();
    let mut out = Vec::with_capacity(size + script.len() + CSS.len() + 512);
    out.extend_from_slice(
        b"<!DOCTYPE html>\n<!-- If you are reading this, there is a good chance you would \
          prefer sending an\n\"Accept: application/json\" header and receiving actual JSON \
          responses. -->\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
          <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
          <title>ballast</title><style>",
    );
    out.extend_from_slice(CSS.as_bytes());
    out.extend_from_slice(
        b"</style></head><body><main id=\"app\"><noscript>This page needs JavaScript; its \
          JSON is in the page source.</noscript></main>\n",
    );
    for (id, json) in blocks {
        out.extend_from_slice(b"<script type=\"application/json\" id=\"");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\">");
        escape_json(json, &mut out);
        out.extend_from_slice(b"</script>\n");
    }
    out.extend_from_slice(b"<script>");
    out.extend_from_slice(script.as_bytes());
    out.extend_from_slice(b"</script></body></html>\n");
    out
}

/// Appends JSON text so that it can sit inside a `<script>` element: no
/// string can end the element or open a comment (`<` `>` `&` become
/// `\u003c` `\u003e` `\u0026`, `/` becomes `\/` as the spec asks), and
/// U+2028/U+2029 are escaped for older script parsers. These characters
/// can only be in strings in valid JSON, where the escapes mean the same,
/// so the data reads back unchanged. Escapes already there are copied
/// whole, so that an escaped backslash before `/` stays one. Invalid JSON
/// comes out just as inert.
fn escape_json(json: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        let next = json.get(i + 1).copied();
        match b {
            b'\\'
                if matches!(
                    next,
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u')
                ) =>
            {
                out.extend_from_slice(&json[i..i + 2]);
                i += 2;
                continue;
            }
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            b'/' => out.extend_from_slice(b"\\/"),
            // U+2028 and U+2029 in UTF-8.
            0xE2 if next == Some(0x80) && matches!(json.get(i + 2), Some(0xA8 | 0xA9)) => {
                let escape: &[u8] = if json[i + 2] == 0xA8 { b"\\u2028" } else { b"\\u2029" };
                out.extend_from_slice(escape);
                i += 3;
                continue;
            }
            _ => out.push(b),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests;
