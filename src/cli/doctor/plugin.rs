//! Where Docker sends a driver name, and whether that is this daemon.
//!
//! Docker resolves a legacy plugin's name to the first socket or spec
//! file it finds for it and keeps that driver for as long as dockerd
//! runs, even once nothing answers there: a managed plugin installed
//! later under the same alias never gets a call. So a socket or spec
//! that does not answer, or that another process serves, is a failure,
//! and so is a volume list that Docker can only answer with a warning.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyperlocal::UnixClientExt;
use serde_json::Value;

use super::{Level, Report, have, run_bounded};

/// What to do about a name Docker resolves to the wrong place.
const STALE_FIX: &str = "remove the stale socket or spec if it is still there and restart Docker \
                         (systemctl restart docker: it keeps a driver it once found), or use \
                         another driver name (another --alias for the managed plugin)";

/// The places Docker looks for a legacy plugin, in its order.
fn legacy_places(driver: &str) -> Vec<PathBuf> {
    let mut places = vec![
        PathBuf::from(format!("/run/docker/plugins/{driver}.sock")),
        PathBuf::from(format!("/run/docker/plugins/{driver}/{driver}.sock")),
    ];
    for dir in ["/etc/docker/plugins", "/usr/lib/docker/plugins"] {
        for ext in ["spec", "json"] {
            places.push(PathBuf::from(format!("{dir}/{driver}.{ext}")));
        }
    }
    places
}

/// The socket a place stands for: itself, or the `unix://` address its
/// spec file names (`None` for an address of another kind).
fn socket_of(place: &Path) -> Result<Option<PathBuf>, String> {
    let ext = place.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "sock" {
        return Ok(Some(place.to_path_buf()));
    }
    let text = std::fs::read(place).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).to_string();
    let addr = if ext == "json" {
        let spec: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        spec["Addr"].as_str().unwrap_or("").to_string()
    } else {
        text.trim().to_string()
    };
    Ok(addr.strip_prefix("unix://").map(PathBuf::from))
}

/// The process serving a Unix socket, asked of the kernel (the peer of a
/// connection is the process that listens), within 2 s.
pub async fn serving_pid(socket: &Path) -> Result<i32, String> {
    let connect = tokio::net::UnixStream::connect(socket);
    let stream = match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no answer within 2 s".into()),
    };
    let cred = rustix::net::sockopt::socket_peercred(&stream).map_err(|e| e.to_string())?;
    Ok(cred.pid.as_raw_nonzero().get())
}

/// Checks where Docker finds `driver`; `daemon` is the process serving
/// the admin socket, when known.
pub async fn check(r: &mut Report, driver: &str, daemon: Option<i32>) {
    let mut legacy = None;
    for place in legacy_places(driver) {
        if std::fs::symlink_metadata(&place).is_err() {
            continue;
        }
        legacy = Some(place.clone());
        let shown = place.display();
        let socket = match socket_of(&place) {
            Ok(Some(socket)) => socket,
            Ok(None) => {
                r.say(Level::Warn, format!("{shown} names no Unix socket; not checked"), None);
                break;
            }
            Err(e) => {
                r.say(Level::Fail, format!("{shown} cannot be read: {e}"), Some(STALE_FIX));
                break;
            }
        };
        match serving_pid(&socket).await {
            Err(e) => r.say(
                Level::Fail,
                format!(
                    "Docker sends driver {driver} to {}, where nothing answers ({e})",
                    socket.display()
                ),
                Some(STALE_FIX),
            ),
            // Both 1: sockets handed over by systemd, whose they stay.
            Ok(pid) if daemon.is_some_and(|d| d != pid && d != 1) => r.say(
                Level::Fail,
                format!(
                    "Docker sends driver {driver} to {}, which another process (pid {pid}) \
                     serves, not this daemon",
                    socket.display()
                ),
                Some("stop the other daemon, or give this one another name (--plugin-socket /run/docker/plugins/NAME.sock, or another --alias)"),
            ),
            Ok(_) => match std::fs::metadata(&socket) {
                Ok(m) if m.mode() & 0o077 != 0 => r.say(
                    Level::Warn,
                    format!(
                        "the plugin socket {} is open to others (mode {:o})",
                        socket.display(),
                        m.mode() & 0o777
                    ),
                    Some("restart the daemon: it creates the socket 0600"),
                ),
                _ => r.say(Level::Ok, format!("plugin socket {}", socket.display()), None),
            },
        }
        break;
    }
    let managed = managed_plugin(driver);
    match (&legacy, &managed) {
        (Some(place), Some(name)) => r.say(
            Level::Fail,
            format!(
                "the managed plugin {name} and the legacy plugin at {} both claim driver \
                 {driver}: Docker sends its volumes to whichever it found first",
                place.display()
            ),
            Some(STALE_FIX),
        ),
        (None, Some(name)) => r.say(Level::Ok, format!("managed plugin {name}"), None),
        (None, None) => r.say(
            Level::Warn,
            format!("no plugin socket at /run/docker/plugins/{driver}.sock"),
            Some("fine for a test daemon; else start the daemon with its default --plugin-socket"),
        ),
        (Some(_), None) => {}
    }
}

/// The managed plugin installed under `driver` (`docker plugin ls`).
fn managed_plugin(driver: &str) -> Option<String> {
    if !have("docker") {
        return None;
    }
    let out = run_bounded(
        Command::new("docker").args(["plugin", "ls", "--format", "{{.Name}}"]),
        Duration::from_secs(20),
    )?;
    let names = String::from_utf8_lossy(&out.stdout).to_string();
    names
        .lines()
        .map(str::trim)
        .find(|n| *n == driver || n.strip_suffix(":latest") == Some(driver))
        .map(str::to_string)
}

/// Whether Docker lists the driver's volumes without a warning: a driver
/// name it resolves to a dead socket makes it retry for half a minute,
/// then answer with the error as a warning (which `docker volume ls`
/// does not print).
pub async fn check_docker(r: &mut Report, driver: &str) {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let Some(socket) = host.strip_prefix("unix://") else {
        r.say(Level::Warn, format!("DOCKER_HOST={host} is not a Unix socket; Docker's view of driver {driver} was not checked"), None);
        return;
    };
    let filters = serde_json::json!({ "driver": [driver] }).to_string();
    let path = format!("/volumes?filters={}", crate::cli::client::seg(&filters));
    let uri: hyper::Uri = hyperlocal::Uri::new(socket, &path).into();
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::unix();
    let ask = async {
        let resp = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let body: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(body["message"].as_str().unwrap_or("").to_string());
        }
        Ok::<_, String>(body)
    };
    match tokio::time::timeout(Duration::from_secs(60), ask).await {
        Ok(Ok(body)) => {
            let warnings: Vec<&str> = body["Warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|w| w.contains(driver))
                .collect();
            if warnings.is_empty() {
                let n = body["Volumes"].as_array().map_or(0, Vec::len);
                r.say(
                    Level::Ok,
                    format!("Docker reaches driver {driver} ({})", super::plural(n, "volume")),
                    None,
                );
            } else {
                r.say(
                    Level::Fail,
                    format!("Docker cannot reach driver {driver}: {}", warnings.join("; ")),
                    Some(STALE_FIX),
                );
            }
        }
        Ok(Err(e)) => r.say(
            Level::Fail,
            format!("Docker cannot use driver {driver}: {e}"),
            Some("is dockerd running, and can it reach the plugin socket (or is the managed plugin enabled)?"),
        ),
        Err(_) => r.say(
            Level::Fail,
            format!("Docker did not answer about driver {driver} within 60 s"),
            Some("dockerd retries a plugin whose socket went away; restart the daemon or dockerd"),
        ),
    }
}
