//! The cluster on etcd (through the `etcd-client` crate). Keys, under
//! `/ballast/v1/`:
//!
//! - `volumes/NAME`: the volume's [`Record`] (JSON);
//! - `keys/NAME`: its cluster key alone, for transactions to compare
//!   (a holding is of that volume, not of another of the same name);
//! - `holders/NAME/NODE`: a [`Holder`], attached to NODE's lease;
//! - `nodes/NODE`: a [`Node`], attached to NODE's lease;
//! - `moves/NAME`: the node that asks for a `follow` volume to come to
//!   it, attached to that node's lease.
//!
//! One lease per daemon, renewed by one task (`lease.rs`); one watch over
//! the whole prefix keeps the holders in memory and feeds the core the
//! registry's changes (`watch.rs`); the changes themselves are
//! transactions (`registry.rs`); `follow.rs` is the watch. Lease and watch reconnect on their own,
//! so the daemon starts and serves its local volumes with etcd down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use tokio::sync::{mpsc, watch};

use super::{Change, Cluster, Error, Fut, Health, Holder, Node, Record, Result, Ticket};
use crate::config::ClusterConfig;
use crate::units::now_ms;

mod follow;
mod lease;
mod registry;

const PREFIX: &str = "/ballast/v1/";

/// How many changes may wait for the core before the watch waits.
const CHANGES_QUEUE: usize = 1024;

/// How long one etcd request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Etcd {
    node: String,
    ttl: Duration,
    config: ClusterConfig,
    client: Mutex<Option<Client>>,
    /// The lease this host's holdings are tied to; 0 while there is none.
    lease: Mutex<i64>,
    holders: Mutex<HashMap<String, Vec<Holder>>>,
    changes: Mutex<Option<mpsc::Receiver<Change>>>,
    health: watch::Sender<Health>,
    started_ms: i64,
}

fn volume_key(name: &str) -> String {
    format!("{PREFIX}volumes/{name}")
}

fn holders_prefix(name: &str) -> String {
    format!("{PREFIX}holders/{name}/")
}

fn key_key(name: &str) -> String {
    format!("{PREFIX}keys/{name}")
}

fn move_key(name: &str) -> String {
    format!("{PREFIX}moves/{name}")
}

/// An etcd client error as ours: what a retry or a wait may cure
/// (unavailable, timed out, no connection) is `Unreachable`; what it
/// cannot (refused credentials, a request etcd rejects) is `Refused`.
fn unreachable(e: etcd_client::Error) -> Error {
    use etcd_client::Error as E;
    use tonic::Code;
    let transient = match &e {
        E::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted
                | Code::ResourceExhausted
        ),
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => true,
        _ => false,
    };
    if transient { Error::Unreachable(e.to_string()) } else { Error::Refused(e.to_string()) }
}

/// A value of ours that could not be encoded (it cannot happen for these
/// plain types; said rather than unwrapped).
fn encoding(e: serde_json::Error) -> Error {
    Error::Refused(format!("encoding a value for etcd: {e}"))
}

impl Etcd {
    /// Starts the lease and watch tasks; returns at once, whether or not
    /// etcd answers yet.
    pub fn start(config: &ClusterConfig) -> Arc<Etcd> {
        let (changes_tx, changes_rx) = mpsc::channel(CHANGES_QUEUE);
        let etcd = Arc::new(Etcd {
            node: config.node.clone(),
            ttl: config.lease_ttl,
            config: config.clone(),
            client: Mutex::new(None),
            lease: Mutex::new(0),
            holders: Mutex::new(HashMap::new()),
            changes: Mutex::new(Some(changes_rx)),
            health: watch::Sender::new(Health::Connecting),
            started_ms: now_ms(),
        });
        tokio::spawn(etcd.clone().keep_lease());
        tokio::spawn(etcd.clone().watch_registry(changes_tx));
        etcd
    }

    async fn connect(&self) -> Result<Client> {
        if let Some(c) = self.client.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let c = &self.config;
        let ping = self.ttl / 5;
        let mut options = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(ping, ping)
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&c.user, &c.password) {
            options = options.with_user(user, password);
        }
        if c.etcd.iter().any(|u| u.starts_with("https://")) {
            options = options.with_tls(tls(c).map_err(Error::Unreachable)?);
        }
        let client = tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(&c.etcd, Some(options)))
            .await
            .map_err(|_| Error::Unreachable("connecting timed out".into()))?
            .map_err(unreachable)?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
        Ok(client)
    }

    fn current_lease(&self) -> Result<i64> {
        match *self.lease.lock().unwrap_or_else(|p| p.into_inner()) {
            0 => Err(Error::NoLease),
            id => Ok(id),
        }
    }

    fn set_lease(&self, id: i64) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }
}

/// Runs `once` again while etcd is unreachable, three times in all: one
/// member down or a leader election must not fail a Mount or an Unmount.
/// Every operation is safe to repeat (see `registry.rs`).
async fn retried<'a, T>(mut once: impl FnMut() -> Fut<'a, T>) -> Result<T> {
    let mut pause = Duration::from_millis(200);
    for _ in 0..2 {
        match once().await {
            Err(Error::Unreachable(e)) => {
                tracing::debug!(error = %e, "cluster: etcd unreachable; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            done => return done,
        }
    }
    once().await
}

enum Key {
    Volume(String),
    Holder(String, String),
    Move(String),
    Other,
}

fn parse_key(key: &[u8]) -> Option<Key> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(PREFIX)?;
    if let Some(name) = rest.strip_prefix("volumes/") {
        return Some(Key::Volume(name.to_string()));
    }
    if let Some(name) = rest.strip_prefix("moves/") {
        return Some(Key::Move(name.to_string()));
    }
    if let Some(rest) = rest.strip_prefix("holders/") {
        let (name, node) = rest.split_once('/')?;
        return Some(Key::Holder(name.to_string(), node.to_string()));
    }
    Some(Key::Other)
}

fn tls(c: &ClusterConfig) -> std::result::Result<etcd_client::TlsOptions, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("[cluster] {}: {e}", p.display()))
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &c.ca_file {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&c.cert_file, &c.key_file) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

impl Cluster for Etcd {
    fn node(&self) -> &str {
        &self.node
    }

    fn mount_wait(&self) -> Duration {
        self.config.mount_wait
    }

    fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    fn register(&self, record: Record) -> Fut<'_, ()> {
        Box::pin(retried(move || Box::pin(self.register_once(record.clone()))))
    }

    fn unregister<'a>(&'a self, name: &'a str, key: &'a str) -> Fut<'a, bool> {
        Box::pin(retried(move || Box::pin(self.unregister_once(name, key))))
    }

    fn hold<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
        mounts: u32,
        exclusive: bool,
    ) -> Fut<'a, Ticket> {
        Box::pin(retried(move || Box::pin(self.hold_once(name, key, mounts, exclusive))))
    }

    fn request_move<'a>(&'a self, name: &'a str, key: &'a str) -> Fut<'a, ()> {
        Box::pin(retried(move || Box::pin(self.request_move_once(name, key))))
    }

    fn cancel_move<'a>(&'a self, name: &'a str) -> Fut<'a, ()> {
        Box::pin(retried(move || Box::pin(self.cancel_move_once(name))))
    }

    fn hand_over(&self, record: Record) -> Fut<'_, ()> {
        Box::pin(retried(move || Box::pin(self.hand_over_once(record.clone()))))
    }

    fn release<'a>(&'a self, name: &'a str) -> Fut<'a, ()> {
        Box::pin(retried(move || Box::pin(self.release_once(name))))
    }

    fn holders(&self, name: &str) -> Vec<Holder> {
        self.holders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn nodes(&self) -> Fut<'_, Vec<Node>> {
        Box::pin(async move {
            let mut client = self.connect().await?;
            let prefix = format!("{PREFIX}nodes/");
            let got = client
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
                .map_err(unreachable)?;
            let mut nodes: Vec<Node> =
                got.kvs().iter().filter_map(|kv| serde_json::from_slice(kv.value()).ok()).collect();
            nodes.sort_by(|a, b| a.node.cmp(&b.node));
            Ok(nodes)
        })
    }

    fn changes(&self) -> Option<mpsc::Receiver<Change>> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }
}
