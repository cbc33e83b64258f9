//! The admin endpoint: Rancher v1 style REST over the core (SPEC §5).
//!
//! Handlers parse a request, call the core, and render the answer with
//! [`resource`]. Every failure, whether the domain's or the request's (an
//! unknown route or method, a body too large, a path that does not
//! decode), becomes a Rancher error body in [`ApiError`]'s `IntoResponse`
//! and nowhere else. Bodies are read as bytes and parsed whatever the
//! Content-Type, like the plugin socket.

mod auth;
mod backups;
mod extract;
mod html;
mod pools;
mod resource;
mod snapshots;
mod volumes;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::core::Ballast;
use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;

pub use auth::Credentials;

/// What every handler needs: the core, the driver name Docker knows us
/// by. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    pub ballast: Ballast,
    pub metrics: Metrics,
    pub driver: Arc<str>,
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
        .route("/v1/backups", get(backups::list).post(backups::create))
        .route("/v1/backups/{id}", get(backups::show).delete(backups::remove).post(backups::action))
        .route("/v1/storagepools", get(pools::list))
        .route("/v1/storagepools/{id}", get(pools::show))
        .route("/v1/backuptargets", get(backups::targets))
        .route("/v1/backuptargets/{id}", get(backups::show_target).post(backups::target_action))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(html::layer))
        .layer(axum::middleware::from_fn_with_state(admin.metrics.clone(), track))
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

/// Counts each request under its method and route template; methods
/// outside the standard ones count as `other` and paths no route matches
/// as `unmatched`, so that nothing a client invents becomes a metrics
/// label.
async fn track(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let endpoint = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", method_label(req.method()), p.as_str()),
        None => "unmatched".to_string(),
    };
    let started = Instant::now();
    // On a task of its own, so that it runs to its end even when the
    // client hangs up half-way: a change must not stop between the store
    // and memory.
    let resp = match tokio::spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => ApiError::from(Error::internal("handling the request", e)).into_response(),
    };
    m.record_request("admin", endpoint, resp.status().as_u16(), started.elapsed());
    resp
}

fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD.iter().find(|m| *m == method).map_or("other", Method::as_str)
}

async fn not_found(uri: Uri) -> ApiError {
    Error::NotFound(format!("no route {}", uri.path())).into()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::rejected(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {} (see the Allow header)", uri.path()),
    )
}

/// A failure on its way to becoming a Rancher error body.
pub enum ApiError {
    /// The core refused or failed.
    Domain(Error),
    /// The request never reached the core: its method, path, query or
    /// body could not be taken as they came.
    Rejected { status: StatusCode, message: String },
}

impl ApiError {
    fn rejected(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::Rejected { status, message: message.into() }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Domain(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Domain(e) => {
                let (status, code) = match e.kind() {
                    ErrorKind::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
                    ErrorKind::InvalidInput => (StatusCode::UNPROCESSABLE_ENTITY, "InvalidInput"),
                    ErrorKind::InvalidState => (StatusCode::CONFLICT, "InvalidState"),
                    ErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
                    ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal"),
                };
                (status, code, e.to_string())
            }
            ApiError::Rejected { status, message } => {
                let code = match status {
                    StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
                    StatusCode::PAYLOAD_TOO_LARGE => "RequestTooLarge",
                    s if s.is_server_error() => "Internal",
                    _ => "InvalidInput",
                };
                (status, code, message)
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %message, "admin request failed");
        }
        error_body(status, code, &message)
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
        Err(e) => ApiError::from(Error::internal("encoding the answer", e)).into_response(),
    }
}
