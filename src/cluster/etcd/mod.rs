//! The cluster on etcd (through the `etcd-client` crate). Keys, under
//! `/ballast/v1/`:
//!
//! - `volumes/NAME`: the volume's [`Record`] (JSON);
//! - `holders/NAME/NODE`: a [`Holder`], attached to NODE's lease;
//! - `nodes/NODE`: a [`Node`], attached to NODE's lease.
//!
//! One lease per daemon, renewed every fifth of its TTL by one task;
//! one watch over the whole prefix keeps the holders in memory and feeds
//! the core the registry's changes. Both reconnect on their own, so the
//! daemon starts and serves its local volumes with etcd down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::{mpsc, watch};

use super::{Change, Cluster, Error, Fut, Health, Holder, Node, Record, Result};
use crate::config::ClusterConfig;
use crate::units::now_ms;

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

fn unreachable(e: impl std::fmt::Display) -> Error {
    Error::Unreachable(e.to_string())
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
            0 => Err(Error::Unreachable("this host holds no lease in etcd now".into())),
            id => Ok(id),
        }
    }

    fn set_lease(&self, id: i64) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    /// Grants this host's lease and keeps it alive; when renewals stop
    /// for 6/10 of the TTL, says `Lost` (the core fences) and starts over
    /// with a new lease: the old one's holdings are void.
    async fn keep_lease(self: Arc<Self>) {
        let ttl = self.ttl;
        let safe = ttl * 6 / 10;
        let beat = ttl / 5;
        loop {
            let held = self.set_up_lease().await;
            let (mut client, id) = match held {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: no lease in etcd; retrying");
                    self.lose();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut safe_until = Instant::now() + safe;
            self.health.send_replace(Health::Up { safe_until });
            tracing::info!(lease = id, node = %self.node, "cluster: lease granted");
            let mut stream = None;
            let mut beats = 0u32;
            loop {
                tokio::time::sleep(beat).await;
                if Instant::now() >= safe_until {
                    break;
                }
                // Every round is bounded by the lease's safe time: a call
                // stuck in a partition must not keep this host writing.
                let sent = Instant::now();
                let limit = (sent + beat).min(safe_until);
                let round = async {
                    if stream.is_none() {
                        stream = Some(client.lease_keep_alive(id).await.map_err(unreachable)?);
                    }
                    let Some((keeper, responses)) = stream.as_mut() else { return Ok(-1) };
                    keeper.keep_alive().await.map_err(unreachable)?;
                    let resp = responses.message().await.map_err(unreachable)?;
                    Ok::<_, Error>(resp.map_or(-1, |r| r.ttl()))
                };
                let renewed = tokio::time::timeout_at(limit.into(), round).await.unwrap_or(Ok(-1));
                match renewed {
                    Ok(left) if left > 0 => {
                        safe_until = sent + safe;
                        self.health.send_replace(Health::Up { safe_until });
                        beats += 1;
                        if beats.is_multiple_of(5) {
                            // The heartbeat `ballast cluster status` shows.
                            let put = self.put_node(&mut client, id);
                            let _ = tokio::time::timeout(beat, put).await;
                        }
                    }
                    // Expired or revoked in etcd: every holding is gone.
                    Ok(0) => break,
                    // A new stream next round: a late answer on this one
                    // would be taken for a renewal it is not.
                    _ => stream = None,
                }
            }
            tracing::warn!(lease = id, "cluster: lease lost; fencing this host's cluster mounts");
            self.lose();
            // Best effort: let the others take over now, not at expiry.
            let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(id)).await;
        }
    }

    fn lose(&self) {
        self.set_lease(0);
        self.health.send_if_modified(|h| {
            let changed = *h != Health::Lost && *h != Health::Connecting;
            if changed {
                *h = Health::Lost;
            }
            changed
        });
    }

    async fn set_up_lease(&self) -> Result<(Client, i64)> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.grant())
            .await
            .map_err(|_| Error::Unreachable("granting a lease timed out".into()))?
    }

    async fn grant(&self) -> Result<(Client, i64)> {
        let mut client = self.connect().await?;
        let secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let id = client.lease_grant(secs, None).await.map_err(unreachable)?.id();
        self.put_node(&mut client, id).await?;
        self.set_lease(id);
        Ok((client, id))
    }

    async fn put_node(&self, client: &mut Client, lease: i64) -> Result<()> {
        let node =
            Node { node: self.node.clone(), started_ms: self.started_ms, heartbeat_ms: now_ms() };
        let value = serde_json::to_vec(&node).map_err(unreachable)?;
        let key = format!("{PREFIX}nodes/{}", self.node);
        client
            .put(key, value, Some(PutOptions::new().with_lease(lease)))
            .await
            .map_err(unreachable)?;
        Ok(())
    }

    /// Reads everything once, then follows the changes from the revision
    /// after it; reconnects where it left off, and reads everything again
    /// when etcd compacted the revisions it missed.
    async fn watch_registry(self: Arc<Self>, changes: mpsc::Sender<Change>) {
        let mut next: Option<i64> = None;
        loop {
            let result = self.watch_once(&changes, &mut next).await;
            if changes.is_closed() {
                return;
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "cluster: registry watch interrupted; resuming");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    async fn watch_once(
        &self,
        changes: &mpsc::Sender<Change>,
        next: &mut Option<i64>,
    ) -> Result<()> {
        let mut client = self.connect().await?;
        let start = match *next {
            Some(rev) => rev,
            None => {
                let all = client
                    .get(PREFIX, Some(GetOptions::new().with_prefix()))
                    .await
                    .map_err(unreachable)?;
                let rev = all.header().map_or(0, |h| h.revision());
                let mut records = Vec::new();
                let mut holders: HashMap<String, Vec<Holder>> = HashMap::new();
                for kv in all.kvs() {
                    match parse_key(kv.key()) {
                        Some(Key::Volume(_)) => {
                            records.extend(serde_json::from_slice(kv.value()).ok())
                        }
                        Some(Key::Holder(name, _)) => {
                            if let Ok(h) = serde_json::from_slice::<Holder>(kv.value()) {
                                holders.entry(name).or_default().push(h);
                            }
                        }
                        _ => {}
                    }
                }
                let known: Vec<String> = {
                    let mut mine = self.holders.lock().unwrap_or_else(|p| p.into_inner());
                    let old = mine.keys().cloned().collect();
                    *mine = holders.clone();
                    old
                };
                send(changes, Change::All(records)).await?;
                for name in known.into_iter().filter(|n| !holders.contains_key(n)) {
                    send(changes, Change::Holders { name, holders: Vec::new() }).await?;
                }
                for (name, holders) in holders {
                    send(changes, Change::Holders { name, holders }).await?;
                }
                rev + 1
            }
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(start).with_prev_key();
        let mut stream = client.watch(PREFIX, Some(options)).await.map_err(unreachable)?;
        while let Some(resp) = stream.message().await.map_err(unreachable)? {
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    // The revisions missed are gone: read everything anew.
                    *next = None;
                }
                return Err(Error::Unreachable(format!(
                    "watch cancelled: {}",
                    resp.cancel_reason()
                )));
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                *next = Some(kv.mod_revision() + 1);
                let put = event.event_type() == EventType::Put;
                match parse_key(kv.key()) {
                    Some(Key::Volume(_)) if put => {
                        if let Ok(r) = serde_json::from_slice::<Record>(kv.value()) {
                            send(changes, Change::Put(r)).await?;
                        }
                    }
                    Some(Key::Volume(name)) => {
                        let prev = event
                            .prev_kv()
                            .and_then(|p| serde_json::from_slice::<Record>(p.value()).ok());
                        let key = prev.map(|r| r.key).unwrap_or_default();
                        send(changes, Change::Deleted { name, key }).await?;
                    }
                    Some(Key::Holder(name, node)) => {
                        let holders = {
                            let mut all = self.holders.lock().unwrap_or_else(|p| p.into_inner());
                            let list = all.entry(name.clone()).or_default();
                            list.retain(|h| h.node != node);
                            if put && let Ok(h) = serde_json::from_slice::<Holder>(kv.value()) {
                                list.push(h);
                            }
                            list.sort_by(|a, b| a.node.cmp(&b.node));
                            let list = list.clone();
                            if list.is_empty() {
                                all.remove(&name);
                            }
                            list
                        };
                        send(changes, Change::Holders { name, holders }).await?;
                    }
                    _ => {}
                }
            }
            if let Some(h) = resp.header() {
                *next = Some(next.unwrap_or(0).max(h.revision() + 1));
            }
        }
        Err(Error::Unreachable("watch stream ended".into()))
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

async fn send(changes: &mpsc::Sender<Change>, change: Change) -> Result<()> {
    changes.send(change).await.map_err(|_| Error::Unreachable("the daemon is stopping".into()))
}

enum Key {
    Volume(String),
    Holder(String, String),
    Node,
}

fn parse_key(key: &[u8]) -> Option<Key> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(PREFIX)?;
    if let Some(name) = rest.strip_prefix("volumes/") {
        return Some(Key::Volume(name.to_string()));
    }
    if let Some(rest) = rest.strip_prefix("holders/") {
        let (name, node) = rest.split_once('/')?;
        return Some(Key::Holder(name.to_string(), node.to_string()));
    }
    rest.strip_prefix("nodes/").map(|_| Key::Node)
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

    fn register(&self, record: Record) -> Fut<'_, ()> {
        Box::pin(retried(move || Box::pin(self.register_once(record.clone()))))
    }

    fn unregister<'a>(&'a self, name: &'a str, key: &'a str) -> Fut<'a, ()> {
        Box::pin(retried(move || Box::pin(self.unregister_once(name, key))))
    }

    fn hold<'a>(&'a self, name: &'a str, mounts: u32, exclusive: bool) -> Fut<'a, ()> {
        Box::pin(retried(move || Box::pin(self.hold_once(name, mounts, exclusive))))
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
