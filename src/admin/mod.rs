//! The admin endpoint: Rancher v1 style REST over the core (SPEC §5).
//!
//! Handlers parse a request, call the core, and render the answer with
//! [`resource`]. Domain errors become Rancher error bodies in
//! [`ApiError`]'s `IntoResponse` and nowhere else. Bodies are read as
//! bytes and parsed whatever the Content-Type, like the plugin socket.

mod auth;
mod pools;
mod resource;
mod snapshots;
mod volumes;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::config::BackupTarget;
use crate::core::Ballast;
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;

pub use auth::Credentials;

/// What every handler needs: the core, the driver name Docker knows us
/// by, and the configured backup targets. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    pub ballast: Ballast,
    pub metrics: Metrics,
    pub driver: Arc<str>,
    pub backup_targets: Arc<[BackupTarget]>,
}

/// The routes of the admin endpoint. With `credentials`, every request
/// must carry them (the TCP listener); without, the Unix socket's file
/// mode is the access control.
pub fn router(admin: Admin, credentials: Option<Credentials>) -> Router {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1", get(root))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/volumes", get(volumes::list).post(volumes::create))
        .route(
            "/v1/volumes/{id}",
            get(volumes::show).put(volumes::update).delete(volumes::remove).post(volumes::action),
        )
        .route("/v1/snapshots", get(snapshots::list))
        .route(
            "/v1/snapshots/{id}",
            get(snapshots::show).delete(snapshots::remove).post(snapshots::action),
        )
        .route("/v1/backups", get(pools::backups))
        .route("/v1/backups/{id}", get(pools::backup).delete(pools::backup))
        .route("/v1/storagepools", get(pools::list))
        .route("/v1/storagepools/{id}", get(pools::show))
        .route("/v1/backuptargets", get(pools::targets))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_refusals))
        .layer(axum::middleware::from_fn_with_state(
            admin.metrics.clone(),
            crate::metrics::track_admin,
        ))
        .with_state(admin);
    match credentials {
        Some(c) => app.layer(axum::middleware::from_fn_with_state(Arc::new(c), auth::require)),
        None => app,
    }
}

async fn healthz(State(a): State<Admin>) -> Response {
    reply(StatusCode::OK, json!({ "status": "ok", "volumes": a.ballast.list().len() }))
}

async fn metrics(State(a): State<Admin>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, content_type)], a.metrics.render())
        .into_response()
}

/// The OpenAPI 3 description of this endpoint, kept beside the routes
/// (`openapi.json`); a test checks that the two match.
async fn openapi() -> Response {
    let doc = include_str!("openapi.json");
    (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], doc).into_response()
}

async fn root(headers: HeaderMap) -> Response {
    let base = resource::base(&headers);
    let link = |c: &str| format!("{base}/v1/{c}");
    reply(
        StatusCode::OK,
        json!({
            "type": "apiRoot",
            "id": "v1",
            "links": {
                "self": format!("{base}/v1"),
                "volumes": link("volumes"),
                "snapshots": link("snapshots"),
                "backups": link("backups"),
                "storagepools": link("storagepools"),
                "backuptargets": link("backuptargets"),
            },
        }),
    )
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError(Error::NotFound(format!("no route {}", uri.path())))
}

/// axum's own refusals (a method the route lacks: 405 with no body; a
/// path segment that is not UTF-8 once decoded: 400 in plain text) become
/// the same error body as every other failure, keeping their headers
/// (`Allow`).
async fn json_refusals(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !resp.status().is_client_error() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let reason = parts.status.canonical_reason().unwrap_or("Client Error");
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => reason.to_lowercase(),
        text => text.to_string(),
    };
    let mut out = error_body(parts.status, &reason.replace(' ', ""), &message);
    for (name, value) in &parts.headers {
        if !matches!(*name, axum::http::header::CONTENT_TYPE | axum::http::header::CONTENT_LENGTH) {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

/// A domain error on its way to becoming a Rancher error body.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match self.0.kind() {
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            ErrorKind::InvalidInput => (StatusCode::UNPROCESSABLE_ENTITY, "InvalidInput"),
            ErrorKind::InvalidState => (StatusCode::CONFLICT, "InvalidState"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "admin request failed");
        }
        error_body(status, code, &self.0.to_string())
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    reply(
        status,
        json!({ "type": "error", "status": status.as_u16(), "code": code, "message": message }),
    )
}

pub type ApiResult = Result<Response, ApiError>;

/// Parses a JSON body of any Content-Type; an empty body is `{}`.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(text)
        .map_err(|e| Error::InvalidInput(format!("malformed request body: {e}")))
}

/// A 200 (or other) answer with a JSON body.
fn reply(status: StatusCode, body: impl serde::Serialize) -> Response {
    match serde_json::to_vec(&body) {
        Ok(bytes) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], bytes)
            .into_response(),
        Err(e) => ApiError(Error::internal("encoding the answer", e)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    async fn refused(resp: Response) -> (StatusCode, HeaderMap, serde_json::Value) {
        let resp = json_refusals(resp).await;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn axum_refusals_become_error_bodies() {
        // What axum answers to PATCH on a route without it.
        let resp = (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET,HEAD,POST")], "");
        let (status, headers, body) = refused(resp.into_response()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET,HEAD,POST");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body["type"], "error");
        assert_eq!(body["status"], 405);
        assert_eq!(body["code"], "MethodNotAllowed");
        assert_eq!(body["message"], "method not allowed");
        // And to GET /v1/volumes/%FF (a path parameter that is not UTF-8).
        let text = "Invalid URL: Cannot parse `\\xFF` to a `String`";
        let resp = (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain")], text);
        let (status, _, body) = refused(resp.into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (body["code"].as_str(), body["message"].as_str()),
            (Some("BadRequest"), Some(text))
        );
        // Our own answers pass untouched.
        let ours = ApiError(Error::NotFound("no volume".into())).into_response();
        let (status, _, body) = refused(ours).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));
    }
}
