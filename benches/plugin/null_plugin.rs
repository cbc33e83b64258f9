//! A null volume plugin: the VolumeDriver protocol answered from memory on
//! the same HTTP stack as ballast (hyper through axum, on a Unix socket),
//! keeping nothing. What Docker costs with a plugin that does no work, so
//! that a ratio against it shows ballast's own cost alone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

type Volumes = Arc<Mutex<HashMap<String, PathBuf>>>;

/// A running null plugin; its socket goes when it is dropped.
pub struct NullPlugin {
    pub driver: String,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl NullPlugin {
    /// Serves driver `name` at `/run/docker/plugins/NAME.sock`.
    pub fn start(name: &str) -> NullPlugin {
        let dir = tempfile::tempdir().unwrap();
        let socket = PathBuf::from(format!("/run/docker/plugins/{name}.sock"));
        std::fs::create_dir_all("/run/docker/plugins").unwrap();
        let _ = std::fs::remove_file(&socket);
        let std_listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let root = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(std_listener).unwrap();
                let volumes: Volumes = Arc::default();
                let app = Router::new()
                    .route(
                        "/Plugin.Activate",
                        post(|| async { reply(json!({ "Implements": ["VolumeDriver"] })) }),
                    )
                    .route(
                        "/VolumeDriver.Capabilities",
                        post(|| async { reply(json!({ "Capabilities": { "Scope": "local" } })) }),
                    )
                    .route("/VolumeDriver.{method}", post(call))
                    .with_state((volumes, root));
                axum::serve(listener, app).await.unwrap();
            });
        });
        NullPlugin { driver: name.to_string(), socket, _dir: dir }
    }
}

impl Drop for NullPlugin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn reply(v: Value) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/vnd.docker.plugins.v1+json")], v.to_string())
}

async fn call(
    State((volumes, root)): State<(Volumes, PathBuf)>,
    axum::extract::Path(method): axum::extract::Path<String>,
    body: String,
) -> ([(&'static str, &'static str); 1], String) {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let name = req["Name"].as_str().unwrap_or_default().to_string();
    let mut volumes = volumes.lock().unwrap();
    let answer = match method.as_str() {
        "Create" => {
            volumes.insert(name.clone(), root.join(&name));
            json!({ "Err": "" })
        }
        "Remove" => {
            volumes.remove(&name);
            json!({ "Err": "" })
        }
        "Mount" | "Path" => {
            // Docker binds a directory: the one thing a null plugin makes.
            let path = volumes.get(&name).cloned().unwrap_or_else(|| root.join(&name));
            let _ = std::fs::create_dir_all(&path);
            json!({ "Mountpoint": path, "Err": "" })
        }
        "Unmount" => json!({ "Err": "" }),
        "Get" => match volumes.get(&name) {
            Some(path) => json!({ "Volume": { "Name": name, "Mountpoint": path }, "Err": "" }),
            None => json!({ "Err": "no such volume" }),
        },
        "List" => {
            let list: Vec<Value> = volumes.keys().map(|n| json!({ "Name": n })).collect();
            json!({ "Volumes": list, "Err": "" })
        }
        _ => json!({ "Err": format!("unknown method {method}") }),
    };
    reply(answer)
}
