//! Which containers mount a volume, asked of Docker's own API: a volume
//! in use is refused with Docker's mount ids, which no docker command
//! shows, so the answer names the containers when Docker says which.
//!
//! Only the admin adapter asks, after the core has answered (no volume
//! lock is held), with a bounded wait and a bounded answer; when Docker
//! does not answer, the core's message (with its `docker ps` hint) stays.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyperlocal::UnixClientExt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// How long Docker has to answer: an error message must not hang on it.
const WAIT: Duration = Duration::from_secs(1);
/// The most of Docker's answer read: a list of many containers is cut.
const MAX_ANSWER: usize = 1 << 20;
/// Containers named in a message; the rest are counted.
const SHOWN: usize = 5;

/// Docker's API socket: the unix path of `DOCKER_HOST`, or the default.
/// A TCP `DOCKER_HOST` is not asked (it may need TLS and credentials).
fn socket() -> Option<String> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host.strip_prefix("unix://").map(str::to_string),
        _ => Some("/var/run/docker.sock".to_string()),
    }
}

/// The names of the containers (running or not) that mount `volume`, or
/// `None` when Docker cannot say.
pub async fn mounting(volume: &str) -> Option<Vec<String>> {
    let socket = socket()?;
    let filter = format!(r#"{{"volume":[{}]}}"#, serde_json::Value::from(volume));
    let path = format!(
        "/containers/json?all=1&filters={}",
        utf8_percent_encode(&filter, NON_ALPHANUMERIC)
    );
    let uri: hyper::Uri = hyperlocal::Uri::new(&socket, &path).into();
    let req = Request::get(uri).body(Empty::<Bytes>::new()).ok()?;
    let ask = async {
        let resp = Client::unix().request(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        Limited::new(resp.into_body(), MAX_ANSWER).collect().await.ok().map(|b| b.to_bytes())
    };
    let body = tokio::time::timeout(WAIT, ask).await.ok()??;
    names(&body)
}

/// Each container's first name, without Docker's leading slash.
fn names(body: &[u8]) -> Option<Vec<String>> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(body).ok()?;
    let names = list
        .iter()
        .filter_map(|c| c["Names"].get(0).and_then(|n| n.as_str()))
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    Some(names)
}

/// The message for `volume` in use by `mounts` of `containers` (none:
/// Docker knows of no container, so the core's message stays).
pub fn message(volume: &str, mounts: usize, containers: &[String]) -> Option<String> {
    if containers.is_empty() {
        return None;
    }
    let mut shown = containers.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if containers.len() > SHOWN {
        shown.push_str(&format!(" and {} more", containers.len() - SHOWN));
    }
    Some(format!("volume {volume:?} is in use by {mounts} mount(s), of container(s) {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_names_lose_their_slash() {
        let body = br#"[{"Names":["/web"]},{"Names":["/db","/x/db"]},{"Names":[]}]"#;
        assert_eq!(names(body).unwrap(), ["web", "db"]);
        assert!(names(b"{\"message\":\"no\"}").is_none());
    }

    #[test]
    fn many_containers_are_counted_past_five() {
        let many: Vec<String> = (1..=8).map(|i| format!("c{i}")).collect();
        assert_eq!(
            message("v", 8, &many).unwrap(),
            r#"volume "v" is in use by 8 mount(s), of container(s) c1, c2, c3, c4, c5 and 3 more"#
        );
        assert!(message("v", 1, &[]).is_none());
    }
}
