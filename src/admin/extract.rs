//! The extractors of the admin endpoint: axum's own, except that a failure
//! (a path segment that is not UTF-8, a body over 2 MiB
//! or too slow to arrive) is an [`ApiError`] like every other failure,
//! rather than axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
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

/// The whole request body, failing with an [`ApiError`].
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) => Err(ApiError::rejected(e.status(), e.body_text())),
        }
    }
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
