//! The extractors of the admin endpoint: axum's own, except that a failure
//! (a path segment that is not UTF-8, a body over 2 MiB
//! or too slow to arrive, a media type this server does not read) is an
//! [`ApiError`] like every other failure, rather than axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiError;

/// `axum::extract::Path`, failing with an [`ApiError`].
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::rejected(e.status(), e.body_text())),
        }
    }
}

/// The whole request body as its Content-Type says, failing with an
/// [`ApiError`].
pub struct Body(pub Payload);

/// A request body in one of the two media types the admin endpoint reads.
pub enum Payload {
    /// JSON: `application/json` or any `+json` type, and a body sent
    /// without a Content-Type (as Docker and many scripts send it).
    Json(Bytes),
    /// `application/x-www-form-urlencoded`, which Rancher's API spec says
    /// a server should accept: the pairs, typed later by the schema.
    Form(Vec<(String, String)>),
}

/// The media types a body may have, as a 415 names them.
pub const SUPPORTED: &str = "application/json or application/x-www-form-urlencoded";

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let media = req.headers().get(header::CONTENT_TYPE).map(|t| {
            let t = String::from_utf8_lossy(t.as_bytes());
            t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
        });
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) => return Err(ApiError::rejected(e.status(), e.body_text())),
        };
        match media.as_deref() {
            None => Ok(Body(Payload::Json(bytes))),
            Some(t) if t == "application/json" || t.ends_with("+json") => {
                Ok(Body(Payload::Json(bytes)))
            }
            Some("application/x-www-form-urlencoded") => {
                Ok(Body(Payload::Form(form_urlencoded::parse(&bytes).into_owned().collect())))
            }
            // Nothing to read is nothing to misread: a bare action sent
            // with some other type (`curl -H 'Content-Type: text/plain'`).
            Some(_) if bytes.iter().all(u8::is_ascii_whitespace) => {
                Ok(Body(Payload::Json(Bytes::new())))
            }
            Some(t) => Err(unsupported(t)),
        }
    }
}

/// The 415 of a body in a media type this server does not read.
fn unsupported(media: &str) -> ApiError {
    let shown: String = media.chars().take(80).collect();
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!("a request body of type {shown:?} cannot be read; send {SUPPORTED}"),
    )
    .detail(format!("set Content-Type to {SUPPORTED}"))
}

/// The query string as its pairs, in order, a repeated key kept each
/// time (filters AND them). Never fails: text that is not UTF-8 is
/// replaced, and then matches nothing.
pub struct Pairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Pairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        Ok(Pairs(form_urlencoded::parse(q.as_bytes()).into_owned().collect()))
    }
}
