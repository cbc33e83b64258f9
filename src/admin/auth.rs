//! HTTP basic auth for the TCP admin listener: every request, compared in
//! constant time so that timing tells nothing about the secret.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

/// The configured access key and secret key.
#[derive(Clone)]
pub struct Credentials {
    expected: Vec<u8>,
}

impl Credentials {
    pub fn new(access_key: &str, secret_key: &str) -> Self {
        Credentials { expected: format!("{access_key}:{secret_key}").into_bytes() }
    }

    fn accepts(&self, authorization: Option<&str>) -> bool {
        // The scheme is case-insensitive (RFC 9110 §11.1): `basic` and
        // `BASIC` are Basic too.
        let encoded = authorization.and_then(|h| {
            let (scheme, rest) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest)
        });
        let Some(encoded) = encoded else {
            return false;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        // `ct_eq` is constant-time for equal lengths; a length mismatch
        // says only that the pair is wrong.
        given.len() == self.expected.len() && bool::from(given.ct_eq(&self.expected))
    }
}

pub async fn require(State(c): State<Arc<Credentials>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    if c.accepts(given) {
        return next.run(req).await;
    }
    let mut resp = super::ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "this endpoint needs HTTP basic auth with the configured access key and secret key",
    )
    .detail("send Authorization: Basic base64(ACCESS_KEY:SECRET_KEY) from [admin] in the config")
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"ballast\""),
    );
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn only_the_exact_pair_passes() {
        let c = Credentials::new("ak", "sk");
        assert!(c.accepts(Some(&basic("ak", "sk"))));
        for bad in [
            basic("ak", "sK"),
            basic("ak", "sk2"),
            basic("", ""),
            "Basic !!".into(),
            "Bearer x".into(),
        ] {
            assert!(!c.accepts(Some(&bad)), "{bad}");
        }
        assert!(!c.accepts(None));
    }

    #[test]
    fn the_scheme_is_read_whatever_its_case() {
        let c = Credentials::new("ak", "sk");
        let token = basic("ak", "sk").split_once(' ').unwrap().1.to_string();
        for scheme in ["basic", "BASIC", "bAsIc"] {
            assert!(c.accepts(Some(&format!("{scheme} {token}"))), "{scheme}");
        }
        for bad in [format!("Basically {token}"), format!("Basic{token}"), token.clone()] {
            assert!(!c.accepts(Some(&bad)), "{bad}");
        }
    }
}
