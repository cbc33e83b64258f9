//! The admin endpoint (admin socket): Rancher-style REST over the core.
//! This version answers `/healthz`; every other path is a Rancher-style
//! `NotFound` error.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::core::Ballast;

pub fn router(ballast: Ballast) -> Router {
    Router::new().route("/healthz", get(healthz)).fallback(not_found).with_state(ballast)
}

async fn healthz(State(b): State<Ballast>) -> Response {
    json_response(StatusCode::OK, json!({ "status": "ok", "volumes": b.list().len() }))
}

async fn not_found(uri: Uri) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({
            "type": "error",
            "status": 404,
            "code": "NotFound",
            "message": format!("no route {}", uri.path()),
        }),
    )
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string())
        .into_response()
}
