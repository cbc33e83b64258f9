//! URLs as the spec's clients use them: every link absolute, built on the
//! address the client reached us by; trailing and repeated slashes
//! ignored; the seeds' singular collection names (`/v1/volume`) and the
//! project-scoped form (`/v1/projects/1a5/volumes`) taken as the canonical
//! plural; and `X-API-Schemas` on every answer.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::Response;

use super::Admin;

/// The one project every resource belongs to (Rancher clients scope
/// their URLs by project).
pub const PROJECT: &str = "1a5";

/// The collections under `/v1`, by every name a client may use for them.
const COLLECTIONS: &[(&str, &str)] = &[
    ("volume", "volumes"),
    ("snapshot", "snapshots"),
    ("backup", "backups"),
    ("storagepool", "storagepools"),
    ("backuptarget", "backuptargets"),
    ("clusternode", "clusternodes"),
    ("project", "projects"),
    ("schema", "schemas"),
];

/// The canonical form of a request path.
pub fn normalize(path: &str) -> String {
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() >= 4 && segs[0] == "v1" && segs[1].eq_ignore_ascii_case("projects") {
        if segs[2] == PROJECT {
            segs.drain(1..3);
        }
    } else if segs.len() >= 2 && segs[0] == "v1" {
        let lower = segs[1].to_ascii_lowercase();
        if let Some((_, plural)) =
            COLLECTIONS.iter().find(|(one, many)| lower == *one || lower == *many)
        {
            segs[1] = plural;
        }
    }
    if segs.len() >= 2 && segs[0] == "v1" {
        let lower = segs[1].to_ascii_lowercase();
        if let Some((_, plural)) =
            COLLECTIONS.iter().find(|(one, many)| lower == *one || lower == *many)
        {
            segs[1] = plural;
        }
    }
    format!("/{}", segs.join("/"))
}

/// Rewrites the request's path to its canonical form, before routing.
pub async fn canonical(mut req: Request, next: Next) -> Response {
    let uri = req.uri();
    let path = normalize(uri.path());
    if path != uri.path() {
        let pq = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(new) = pq.parse::<Uri>() {
            *req.uri_mut() = new;
        }
    }
    next.run(req).await
}

/// Adds `X-API-Schemas` to every answer, errors and 401s included.
pub async fn schemas_header(State(a): State<Admin>, req: Request, next: Next) -> Response {
    let base = base_url(req.headers(), a.trust_forwarded, a.tls);
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/v1/schemas")) {
        resp.headers_mut().insert("x-api-schemas", v);
    }
    resp
}

/// The scheme, host and port (and, behind a trusted proxy, path prefix)
/// links start with.
#[derive(Debug, Clone)]
pub struct Base(pub String);

impl FromRequestParts<Admin> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, a: &Admin) -> Result<Self, Self::Rejection> {
        Ok(Base(base_url(&parts.headers, a.trust_forwarded, a.tls)))
    }
}

/// The URL prefix of links. `X-Forwarded-Proto`, `-Host`, `-Port` and
/// `-Prefix` count only when the configuration says a proxy we trust
/// sets them; every value must look like what it claims to be, so no
/// header can put arbitrary text into a link.
pub fn base_url(headers: &HeaderMap, trust_forwarded: bool, tls: bool) -> String {
    let get = |name: &str| headers.get(name).and_then(|h| h.to_str().ok()).map(str::trim);
    let first = |name: &str| get(name).map(|v| v.split(',').next().unwrap_or("").trim());
    let host_ok = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
    };
    let mut scheme = if tls { "https" } else { "http" };
    let mut host = get(header::HOST.as_str()).filter(host_ok).unwrap_or("localhost").to_string();
    let mut prefix = String::new();
    if trust_forwarded {
        if let Some(p) = first("x-forwarded-proto").filter(|p| *p == "http" || *p == "https") {
            scheme = if p == "https" { "https" } else { "http" };
        }
        if let Some(h) = first("x-forwarded-host").filter(host_ok) {
            host = h.to_string();
        }
        if let Some(port) = first("x-forwarded-port").and_then(|p| p.parse::<u16>().ok()) {
            let bare = without_port(&host).to_string();
            let default = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
            host = if default { bare } else { format!("{bare}:{port}") };
        }
        if let Some(p) = first("x-forwarded-prefix").filter(|p| {
            p.starts_with('/')
                && p.len() <= 200
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c))
        }) {
            prefix = p.trim_end_matches('/').to_string();
        }
    }
    format!("{scheme}://{host}{prefix}")
}

/// `host:port` → `host`, `[::1]:80` → `[::1]`; a bare IPv6 literal or a
/// host without a port stays as it is.
fn without_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.split_once(':') {
        Some((h, p)) if !p.contains(':') => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_take_their_canonical_form() {
        for (given, want) in [
            ("/v1/volumes", "/v1/volumes"),
            ("/v1/volumes/", "/v1/volumes"),
            ("//v1///volumes//db/", "/v1/volumes/db"),
            ("/v1/volume", "/v1/volumes"),
            ("/v1/volume/1v3", "/v1/volumes/1v3"),
            ("/v1/storagePool", "/v1/storagepools"),
            ("/v1/projects/1a5/volumes", "/v1/volumes"),
            ("/v1/projects/1a5/volume/db", "/v1/volumes/db"),
            ("/v1/projects/1a5", "/v1/projects/1a5"),
            ("/v1/projects/9a9/volumes", "/v1/projects/9a9/volumes"),
            ("/", "/"),
            ("/v1/", "/v1"),
            ("/v1/nothing", "/v1/nothing"),
        ] {
            assert_eq!(normalize(given), want, "{given}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_when_trusted_and_well_formed() {
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:8080".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "api.example.com".parse().unwrap());
        h.insert("x-forwarded-port", "443".parse().unwrap());
        h.insert("x-forwarded-prefix", "/ballast/".parse().unwrap());
        assert_eq!(base_url(&h, false, false), "http://127.0.0.1:8080");
        assert_eq!(base_url(&h, true, false), "https://api.example.com/ballast");
        h.insert("x-forwarded-port", "8443".parse().unwrap());
        assert_eq!(base_url(&h, true, false), "https://api.example.com:8443/ballast");
        h.insert("x-forwarded-host", "evil\"><script>".parse().unwrap());
        h.insert("x-forwarded-prefix", "/a<b".parse().unwrap());
        assert_eq!(base_url(&h, true, false), "https://127.0.0.1:8443");
        let mut v6 = HeaderMap::new();
        v6.insert("host", "[::1]:8080".parse().unwrap());
        v6.insert("x-forwarded-port", "8443".parse().unwrap());
        assert_eq!(base_url(&v6, true, false), "http://[::1]:8443");
        let mut bad = HeaderMap::new();
        bad.insert("host", "a b".parse().unwrap());
        assert_eq!(base_url(&bad, false, false), "http://localhost");
    }
}
