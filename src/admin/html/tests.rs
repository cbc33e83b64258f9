use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use super::*;

fn headers(accept: Option<&str>, agent: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(a) = accept {
        h.insert(header::ACCEPT, HeaderValue::from_str(a).unwrap());
    }
    if let Some(u) = agent {
        h.insert(header::USER_AGENT, HeaderValue::from_str(u).unwrap());
    }
    h
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const NAVIGATION: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

#[test]
fn browsers_get_pages_and_programs_get_json() {
    let html = [
        (Some(NAVIGATION), Some(FIREFOX)),
        (Some(NAVIGATION), None),
        (Some("*/*"), Some(FIREFOX)),
        (Some("*/*"), Some("MOZILLA/5.0")),
        (Some("TEXT/HTML"), None),
        (Some("text/html, application/json"), None),
        (Some("application/json;q=0.5, text/html"), None),
        (Some("text/html;q=nan, application/json;q=0.9"), None),
    ];
    for (accept, agent) in html {
        assert!(wants_html(&headers(accept, agent)), "{accept:?} {agent:?}");
    }
    let json = [
        (None, None),
        (None, Some(FIREFOX)),
        (Some("*/*"), None),
        (Some("*/*"), Some("curl/8.5.0")),
        (Some("*/*"), Some("python-requests/2.31")),
        (Some("application/json"), Some(FIREFOX)),
        (Some("text/json"), Some(FIREFOX)),
        (Some("application/json, text/html"), Some(FIREFOX)),
        (Some("application/json, */*"), Some(FIREFOX)),
        (Some("text/html;q=0.5, application/json"), None),
        (Some("text/html;q=0, */*"), Some(FIREFOX)),
        (Some("text/plain"), Some(FIREFOX)),
    ];
    for (accept, agent) in json {
        assert!(!wants_html(&headers(accept, agent)), "{accept:?} {agent:?}");
    }
}

const HOSTILE: &[&str] = &[
    "</script><script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">",
    "</SCRIPT >",
    "<!--<script>",
    "]]>",
    "&lt;&amp;",
    "a/b\\/c\\\\/d",
    "line\u{2028}separator\u{2029}paragraph",
    "\u{0}\u{1f}\"quoted\"\n",
    "ünïcödé 🚀",
];

fn escaped(json: &[u8]) -> String {
    let mut out = Vec::new();
    escape_json(json, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn escaped_json_cannot_end_its_script_and_reads_back_the_same() {
    for s in HOSTILE {
        let value = json!({ "s": s, "list": [s], s.to_string(): 1 });
        let out = escaped(&serde_json::to_vec(&value).unwrap());
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!out.contains(bad), "{bad:?} left in {out}");
        }
        assert!(!out.replace("\\/", "").contains('/'), "an unescaped / in {out}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), value, "{out}");
    }
    // Escapes already there stay whole: `\/` is a slash, `\\/` a backslash
    // and a slash.
    for (raw, want) in [(r#"["\/"]"#, "/"), (r#"["\\/"]"#, "\\/"), (r#"["\u003c"]"#, "<")] {
        let out = escaped(raw.as_bytes());
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([want]), "{out}");
    }
    // Invalid JSON comes out inert too.
    for raw in ["\\<", "<\\", "\\", "\"</script"] {
        assert!(!escaped(raw.as_bytes()).contains('<'), "{raw}");
    }
}

#[test]
fn the_page_runs_exactly_the_hashed_script() {
    for (script, csp) in [(UI_JS, &*UI_CSP), (DASHBOARD_JS, &*DASHBOARD_CSP)] {
        // Nothing in the static code may end or confuse its element.
        for end in ["</script", "<script", "<!--"] {
            assert!(!script.to_ascii_lowercase().contains(end), "{end} in a script");
        }
        let data = serde_json::to_vec(&json!(HOSTILE)).unwrap();
        let page = String::from_utf8(page(script, &[("data", &data)])).unwrap();
        assert!(page.contains(&format!("<script>{script}</script>")));
        assert!(page.contains(&format!("<style>{CSS}</style>")));
        assert_eq!(page.matches("<script").count(), 2, "the data block and the code");
        assert_eq!(page.matches("</script").count(), 2);
        let csp = csp.to_str().unwrap();
        assert!(csp.contains(&sha256_source(script)) && csp.contains(&sha256_source(CSS)), "{csp}");
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
    assert!(!CSS.to_ascii_lowercase().contains("</style"));
    // A known vector, so that the hash is the one browsers compute.
    assert_eq!(sha256_source("alert(1)"), "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='");
}

/// Serves `app` behind the layer on a loopback port and returns its raw
/// answer to one request.
async fn raw(app: Router, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app.layer(axum::middleware::from_fn_with_state((false, false), layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    server.abort();
    let out = String::from_utf8_lossy(&out).to_string();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn get_as(path: &str, accept: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: h\r\nAccept: {accept}\r\nUser-Agent: {FIREFOX}\r\n\
         Connection: close\r\n\r\n"
    )
}

fn created() -> Router {
    Router::new().route(
        "/v1/things",
        get(|| async {
            let headers = [
                (header::CONTENT_TYPE, "application/json"),
                (header::LOCATION, "/v1/things/1"),
                (header::HeaderName::from_static("x-api-schemas"), "http://h/v1/schemas"),
                (header::HeaderName::from_static("x-custom"), "kept"),
            ];
            (StatusCode::CREATED, headers, r#"{"type":"thing","name":"</script>"}"#)
        }),
    )
}

#[tokio::test]
async fn a_page_keeps_the_status_and_headers_of_its_json() {
    let (status, head, body) = raw(created(), &get_as("/v1/things", NAVIGATION)).await;
    assert_eq!(status, 201);
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(head.contains("location: /v1/things/1"), "{head}");
    assert!(head.contains("x-api-schemas: http://h/v1/schemas"), "{head}");
    assert!(head.contains("x-custom: kept"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(head.contains("vary: accept, user-agent"), "{head}");
    assert!(body.contains(r#""name":"\u003c\/script\u003e""#), "{body}");
    assert!(body.contains(r#"id="schemas">"http:\/\/h\/v1\/schemas"</script>"#), "{body}");

    // A program gets the JSON as it was.
    let (status, head, body) = raw(created(), &get_as("/v1/things", "application/json")).await;
    assert_eq!(status, 201);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body, r#"{"type":"thing","name":"</script>"}"#);
}

#[tokio::test]
async fn only_json_answers_to_gets_become_pages() {
    let app = || {
        Router::new()
            .route("/metrics", get(|| async { "# HELP text" }))
            .route("/v1/x", axum::routing::post(|| async { "{}" }))
    };
    let (_, head, body) = raw(app(), &get_as("/metrics", NAVIGATION)).await;
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert_eq!(body, "# HELP text");
    let post = get_as("/v1/x", NAVIGATION).replacen("GET", "POST", 1);
    let (_, head, _) = raw(app(), &post).await;
    assert!(!head.contains("text/html"), "{head}");
}

#[tokio::test]
async fn the_dashboard_is_for_browsers_only() {
    let json = || async { ([(header::CONTENT_TYPE, "application/json")], r#"{"type":"x"}"#) };
    let app = || Router::new().route("/", get(json));
    let (status, head, body) = raw(app(), &get_as("/", NAVIGATION)).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/html"), "{head}");
    assert!(body.contains(DASHBOARD_JS));
    assert!(head.contains(&DASHBOARD_CSP.to_str().unwrap().to_ascii_lowercase()), "{head}");
    let (_, head, body) = raw(app(), &get_as("/", "application/json")).await;
    assert!(head.contains("application/json"), "{head}");
    assert_eq!(body, r#"{"type":"x"}"#);
}

#[tokio::test]
async fn an_answer_too_large_for_a_page_is_an_error_page() {
    let app = Router::new().route(
        "/big",
        get(|| async {
            let body = vec![b' '; MAX_JSON + 1];
            ([(header::CONTENT_TYPE, "application/json")], body)
        }),
    );
    let (status, head, body) = raw(app, &get_as("/big", NAVIGATION)).await;
    assert_eq!(status, 500);
    assert!(head.contains("text/html"), "{head}");
    assert!(body.contains(r#""code":"Internal""#) && body.len() < 1 << 20, "{}", body.len());
}
