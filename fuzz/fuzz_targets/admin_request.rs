//! Arbitrary requests to the admin endpoint, written as HTTP/1.1 heads:
//!
//! ```text
//! METHOD TARGET [tcp]
//! Header: value
//!
//! body…
//! ```
//!
//! With `tcp`, the request goes to the TCP listener's router (basic auth
//! with access key `fuzz`, secret key `fuzz-secret`), else to the admin
//! socket's. A head that hyper would refuse (a bad method, target or
//! header) is skipped, as the server never hands such a request on.
//!
//! Every answer must be JSON (`GET /metrics`: text; `HEAD`: no body) and
//! no input may cause a 5xx.

#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri};
use ballast::admin::{self, Admin, Credentials};
use ballast_fuzz::Fixture;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The socket's router and the TCP listener's.
fn routers() -> &'static (Router, Router) {
    static ROUTERS: OnceLock<(Router, Router)> = OnceLock::new();
    ROUTERS.get_or_init(|| {
        let f = Fixture::get();
        let state = Admin {
            ballast: f.ballast.clone(),
            metrics: f.metrics.clone(),
            driver: "ballast".into(),
            trust_forwarded: false,
            tls: false,
        };
        let creds = Credentials::new("fuzz", "fuzz-secret");
        (admin::router(state.clone(), None), admin::router(state, Some(creds)))
    })
}

/// A request and which router it is for, or None for what hyper refuses.
fn request(data: &[u8]) -> Option<(Request<Body>, bool)> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut words = lines.next()?.split(|&b| b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    let tcp = words.next() == Some(b"tcp");
    let mut req = Request::builder().method(method).uri(uri);
    for line in lines.take(32) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            req = req.header(name, value);
        }
    }
    Some((req.body(Body::from(body.to_vec())).ok()?, tcp))
}

fuzz_target!(|data: &[u8]| {
    let Some((req, tcp)) = request(data) else { return };
    let what = format!("{} {}", req.method(), req.uri());
    let is_head = req.method() == Method::HEAD;
    // Repeated and trailing slashes are ignored: `//metrics/` is /metrics.
    let segments: Vec<&str> = req.uri().path().split('/').filter(|s| !s.is_empty()).collect();
    let is_metrics = req.method() == Method::GET && segments == ["metrics"];
    let (socket, tcp_router) = routers();
    let f = Fixture::get();
    let (status, content_type, answer) = f.call(if tcp { tcp_router } else { socket }, req);
    assert!(!status.is_server_error(), "{what}: {status}: {}", String::from_utf8_lossy(&answer));
    if is_head && answer.is_empty() {
        // HEAD is answered as GET, without the body.
    } else if is_metrics && status.is_success() {
        assert!(content_type.starts_with("application/openmetrics-text"), "{what}: {content_type}");
        assert!(std::str::from_utf8(&answer).is_ok(), "{what}: metrics are not UTF-8");
    } else {
        assert!(content_type.starts_with("application/json"), "{what}: {status}: {content_type:?}");
        let json: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!("{what}: {status}: not JSON ({e}): {:?}", String::from_utf8_lossy(&answer))
        });
        if !status.is_success() {
            assert_eq!(json["type"], "error", "{what}: {status}: {json}");
            assert_eq!(json["status"], status.as_u16(), "{what}: {json}");
        }
    }
    f.tidy();
});
