//! The Docker VolumeDriver protocol adapter (plugin socket).
//!
//! Docker POSTs JSON without a Content-Type header, sends an empty body to
//! `/Plugin.Activate` and `"Opts": null` when no `-o` was given, so the
//! body is read as bytes and parsed leniently. Every answer carries the
//! plugin media type; every failure is `{"Err": "…"}`, a body too large or
//! too slow included. Domain errors are turned into responses in
//! [`failure`] and nowhere else.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Error;
use crate::core::Ballast;
use crate::metrics::Metrics;
use crate::opts;
use crate::pool::Scope;
use crate::volume::Volume;

/// The media type of Docker plugin protocol v1.2.
pub const MEDIA_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The protocol methods ballast answers.
pub const METHODS: &[&str] = &[
    "Plugin.Activate",
    "VolumeDriver.Capabilities",
    "VolumeDriver.Create",
    "VolumeDriver.Remove",
    "VolumeDriver.Mount",
    "VolumeDriver.Unmount",
    "VolumeDriver.Path",
    "VolumeDriver.Get",
    "VolumeDriver.List",
];

/// The routes of the plugin socket.
pub fn router(ballast: Ballast, metrics: Metrics) -> Router {
    Router::new()
        .fallback(call)
        .with_state(ballast)
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Counts each call under its protocol method; any other path counts as
/// `unknown`, so that nothing a client invents becomes a metrics label.
async fn track(State(m): State<Metrics>, req: axum::extract::Request, next: Next) -> Response {
    let path = req.uri().path().trim_start_matches('/');
    let endpoint = METHODS.iter().find(|&&known| known == path).copied().unwrap_or("unknown");
    let started = Instant::now();
    // On a task of its own, so that it runs to its end even when Docker
    // hangs up half-way: a change must not stop between the store and
    // memory.
    let resp = match tokio::spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "Err": format!("internal error handling {endpoint}: {e}") }),
        ),
    };
    m.record_request("plugin", endpoint.to_string(), resp.status().as_u16(), started.elapsed());
    resp
}

/// Every request body Docker sends, with every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Opts")]
    opts: Option<HashMap<String, String>>,
    #[serde(rename = "ID")]
    id: String,
}

async fn call(State(b): State<Ballast>, uri: Uri, body: Result<Bytes, BytesRejection>) -> Response {
    let method = uri.path().trim_start_matches('/').to_string();
    let body = match body {
        Ok(body) => body,
        // Over the 2 MiB limit, or sent too slowly.
        Err(e) => {
            return reply(e.status(), json!({ "Err": format!("{method}: {}", e.body_text()) }));
        }
    };
    let req: Request = if body.iter().all(u8::is_ascii_whitespace) {
        Request::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(req) => req,
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "Err": format!("{method}: malformed request body: {e}") }),
                );
            }
        }
    };
    tracing::debug!(%method, name = %req.name, id = %req.id, "plugin call");
    let result = match method.as_str() {
        "Plugin.Activate" => Ok(json!({ "Implements": ["VolumeDriver"] })),
        "VolumeDriver.Capabilities" => {
            let scope = match b.scope() {
                Scope::Local => "local",
                Scope::Global => "global",
            };
            Ok(json!({ "Capabilities": { "Scope": scope } }))
        }
        "VolumeDriver.Create" => {
            b.create(&req.name, opts::canonical(req.opts)).await.map(|_| json!({}))
        }
        "VolumeDriver.Remove" => b.remove(&req.name).await.map(|()| json!({})),
        "VolumeDriver.Mount" => {
            b.mount(&req.name, &req.id).await.map(|p| json!({ "Mountpoint": p }))
        }
        "VolumeDriver.Unmount" => b.unmount(&req.name, &req.id).await.map(|()| json!({})),
        "VolumeDriver.Path" => {
            b.get(&req.name).map(|v| json!({ "Mountpoint": b.docker_mountpoint(&v) }))
        }
        "VolumeDriver.Get" => b.get(&req.name).map(|v| json!({ "Volume": describe(&b, &v) })),
        "VolumeDriver.List" => return list(&b),
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({ "Err": format!("unknown endpoint /{method}: ballast implements VolumeDriver") }),
            );
        }
    };
    match result {
        Ok(body) => reply(StatusCode::OK, body),
        Err(e) => failure(&method, &req.name, e),
    }
}

/// List is the one answer that grows with the number of volumes: it is
/// serialized straight from the records, without an intermediate `Value`.
fn list(b: &Ballast) -> Response {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        #[serde(rename = "Name")]
        name: &'a str,
        #[serde(rename = "Mountpoint")]
        mountpoint: Option<std::path::PathBuf>,
    }
    #[derive(serde::Serialize)]
    struct List<'a> {
        #[serde(rename = "Volumes")]
        volumes: Vec<Entry<'a>>,
    }
    let all = b.list();
    let volumes =
        all.iter().map(|v| Entry { name: &v.name, mountpoint: b.docker_mountpoint(v) }).collect();
    match serde_json::to_vec(&List { volumes }) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, MEDIA_TYPE)], body).into_response(),
        Err(e) => failure("VolumeDriver.List", "", Error::internal("encoding the volume list", e)),
    }
}

/// The one place a domain error becomes a Docker answer. Docker shows the
/// `Err` text to the user (prefixed with the method), whatever the status.
fn failure(method: &str, name: &str, e: Error) -> Response {
    if matches!(e, Error::NotFound(_)) {
        // Docker calls Get before every Create: a miss is routine.
        tracing::debug!(%method, volume = name, error = %e, "plugin call failed");
    } else {
        tracing::warn!(%method, volume = name, error = %e, "plugin call failed");
    }
    reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "Err": e.to_string() }))
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, MEDIA_TYPE)], body.to_string()).into_response()
}

/// A volume as `docker volume inspect` shows it.
fn describe(b: &Ballast, v: &Volume) -> Value {
    json!({
        "Name": v.name,
        "Mountpoint": b.docker_mountpoint(v).as_deref().unwrap_or(Path::new("")),
        "CreatedAt": v.created_rfc3339(),
        "Status": {
            "id": v.public_id(),
            "state": v.state.as_str(),
            "transitioning": v.transitioning.as_str(),
            "transitioningMessage": v.transitioning_message,
            "pool": v.pool,
            "sizeBytes": v.size_bytes,
            "usedBytes": v.used_bytes,
            "snapshots": b.snapshot_count(v.id),
            "mounts": v.mount_count(),
            "description": v.description,
        },
    })
}
