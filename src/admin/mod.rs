//! The admin endpoint: Rancher v1 style REST over the core
//! (docs/design.md, "The admin endpoint").
//!
//! Handlers parse a request, call the core, and render the answer with
//! [`resource`]. Every failure, whether the domain's or the request's (an
//! unknown route or method, a body too large, a path that does not
//! decode), becomes a Rancher error body in [`ApiError`]'s `IntoResponse`
//! and nowhere else. Bodies are JSON (also when sent without a
//! Content-Type, as Docker and scripts do) or forms (`form.rs`); any other
//! media type is a 415.

mod auth;
mod backups;
mod cluster;
mod containers;
mod discovery;
pub mod error;
mod extract;
mod form;
mod html;
mod openapi;
mod pools;
pub mod query;
mod resource;
pub mod schema;
mod snapshots;
pub mod urls;
mod volumes;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::core::Ballast;
use crate::error::Error;
use crate::metrics::Metrics;

pub use auth::Credentials;
pub use error::{ApiError, ApiResult};

/// What every handler needs: the core, the driver name Docker knows us
/// by, and whether `X-Forwarded-*` headers are to be believed. Cheap to
/// clone.
#[derive(Clone)]
pub struct Admin {
    pub ballast: Ballast,
    pub metrics: Metrics,
    pub driver: Arc<str>,
    pub trust_forwarded: bool,
    /// Served over TLS: links start with `https`.
    pub tls: bool,
}

/// The routes of the admin endpoint. With `credentials`, every request
/// must carry them (the TCP listener); without, the Unix socket's file
/// mode is the access control.
pub fn router(admin: Admin, credentials: Option<Credentials>) -> Router {
    let routes = Router::new()
        .route("/", get(discovery::versions))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1", get(discovery::root))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/schemas", get(discovery::schemas))
        .route("/v1/schemas/{id}", get(discovery::schema))
        .route("/v1/projects", get(discovery::projects))
        .route("/v1/projects/{id}", get(discovery::project_one))
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
        .route("/v1/clusternodes", get(cluster::list))
        .route("/v1/backuptargets/{id}", get(backups::show_target).post(backups::target_action))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(error::name_containers))
        .layer(axum::middleware::from_fn_with_state(
            (admin.trust_forwarded, admin.tls),
            html::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(admin.metrics.clone(), track))
        .with_state(admin.clone());
    // Paths take their canonical form before routing, which only a
    // service wrapped around the whole router can do.
    let canonical = tower_layer::Layer::layer(&axum::middleware::from_fn(urls::canonical), routes);
    let app = Router::new().fallback_service(canonical);
    let app = match credentials {
        Some(c) => app.layer(axum::middleware::from_fn_with_state(Arc::new(c), auth::require)),
        None => app,
    };
    app.layer(axum::middleware::from_fn_with_state(admin, urls::schemas_header))
}

async fn healthz(State(a): State<Admin>) -> Response {
    reply(StatusCode::OK, json!({ "status": "ok", "volumes": a.ballast.list().len() }))
}

async fn metrics(State(a): State<Admin>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, content_type)], a.metrics.render())
        .into_response()
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
    .detail("the Allow header lists the methods this URL takes; /v1/schemas lists each type's")
}

/// The `?action=NAME` of a POST, among the schema's actions.
fn action_of(
    schema: &'static schema::Schema,
    pairs: &[(String, String)],
) -> Result<&'static schema::ActionDef, ApiError> {
    let names: Vec<&str> = schema.resource_actions.iter().map(|a| a.name).collect();
    let Some((_, name)) = pairs.iter().find(|(k, _)| k == "action") else {
        return Err(ApiError::field(
            "MissingRequired",
            "action",
            format!(
                "POST on a {} needs ?action=NAME; its actions: {}",
                schema.id,
                names.join(", ")
            ),
        ));
    };
    schema.action(name).ok_or_else(|| {
        ApiError::field(
            "InvalidOption",
            "action",
            format!("unknown {} action {name:?}; its actions: {}", schema.id, names.join(", ")),
        )
    })
}

/// An action absent from the resource's `actions` map now, and why.
fn not_available(action: &str, why: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "ActionNotAvailable", why)
        .detail(format!("`{action}` is not in the resource's `actions` map now"))
}

/// Refuses an action absent from the resource's `actions` map now.
fn require_listed(resource: &Value, action: &str) -> Result<(), ApiError> {
    if resource["actions"].get(action).is_some() {
        return Ok(());
    }
    let text = |k: &str| resource[k].as_str().unwrap_or_default().to_string();
    let why = format!(
        "{} {} is {}: {action} is not possible now",
        text("type"),
        text("id"),
        text("state")
    );
    Err(not_available(action, why))
}

/// A body as the JSON object it stands for: a form's fields typed by
/// `schema`; an empty body is `{}`.
fn body_json(body: &extract::Payload, schema: &schema::Schema) -> Result<Value, ApiError> {
    let body = match body {
        extract::Payload::Form(pairs) => return form::to_json(schema, pairs),
        extract::Payload::Json(bytes) => bytes,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::rejected(StatusCode::UNPROCESSABLE_ENTITY, format!("malformed request body: {e}"))
            .detail("the body must be one JSON object")
    })
}

/// A body checked against `schema` for `mode` (fields it may not write
/// dropped, defaults filled in), as `T`.
fn accept<T: serde::de::DeserializeOwned>(
    a: &Admin,
    schema: &schema::Schema,
    body: &extract::Payload,
    mode: schema::Mode,
) -> Result<T, ApiError> {
    accept_json(a, schema, &body_json(body, schema)?, mode)
}

/// [`accept`] of a body already parsed.
fn accept_json<T: serde::de::DeserializeOwned>(
    a: &Admin,
    schema: &schema::Schema,
    body: &Value,
    mode: schema::Mode,
) -> Result<T, ApiError> {
    let fields = schema::accept(schema, body, mode, &a.driver)?;
    serde_json::from_value(Value::Object(fields)).map_err(|e| {
        ApiError::rejected(StatusCode::UNPROCESSABLE_ENTITY, format!("request body: {e}"))
    })
}

/// A 200 (or other) answer with a JSON body.
fn reply(status: StatusCode, body: impl serde::Serialize) -> Response {
    match serde_json::to_vec(&body) {
        Ok(bytes) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], bytes)
            .into_response(),
        Err(e) => ApiError::from(Error::internal("encoding the answer", e)).into_response(),
    }
}
