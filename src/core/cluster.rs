//! The core in a cluster (docs/cluster.md): every host keeps a row for
//! every cluster volume, mirrored from the registry by one task, so that
//! Docker's Get and List are answered from memory as for local volumes; a
//! Mount holds the volume in etcd first; a host that lost its lease fences
//! its mounts. The cluster is reached through [`Cluster`] alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Ballast;
use super::locks::Key;
use crate::cluster::{Change, Cluster, Error as ClusterError, Health, Record};
use crate::pool::Scope;
use crate::units::now_ms;
use crate::volume::{Membership, State, Transitioning, Volume};
use crate::{Error, Result};

/// A cluster volume's standing on this host, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Not a cluster volume.
    Local,
    /// No host holds it.
    Free,
    /// This host holds it.
    HeldHere,
    /// Another host holds it.
    HeldElsewhere,
    /// This host lost its right to it while mounted: read-only.
    Fenced,
}

impl LeaseState {
    pub const NAMES: &[&str] = &["local", "free", "held", "heldElsewhere", "fenced"];

    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Local => "local",
            LeaseState::Free => "free",
            LeaseState::HeldHere => "held",
            LeaseState::HeldElsewhere => "heldElsewhere",
            LeaseState::Fenced => "fenced",
        }
    }
}

impl From<ClusterError> for Error {
    fn from(e: ClusterError) -> Error {
        match e {
            ClusterError::Taken { .. } => Error::Conflict(e.to_string()),
            ClusterError::Held { ref name, ref node, mounts } => Error::InUse {
                volume: name.clone(),
                mounts: mounts as usize,
                message: format!(
                    "volume {name:?} is in use on host {node} ({mounts} mount(s)); stop its \
                     containers there first"
                ),
            },
            ClusterError::Moved { .. } => Error::Conflict(e.to_string()),
            ClusterError::Unknown { .. } => Error::NotFound(e.to_string()),
            ClusterError::Unreachable(_) => Error::InvalidState(format!(
                "{e}; cluster volumes cannot change until it answers (local volumes can)"
            )),
        }
    }
}

impl Ballast {
    /// Joins the cluster: new volumes are registered from now on, the
    /// registry's volumes are mirrored here, Mounts hold volumes in etcd,
    /// and a lost lease fences this host's mounts.
    pub fn join(&self, cluster: Arc<dyn Cluster>) {
        let changes = cluster.changes();
        if self.inner.cluster.set(cluster.clone()).is_err() {
            return;
        }
        if let Some(mut changes) = changes {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(change) = changes.recv().await {
                    this.apply(change).await;
                }
            });
        }
        let this = self.clone();
        let mut health = cluster.health();
        tokio::spawn(async move {
            let mut was_up = false;
            loop {
                let now = *health.borrow_and_update();
                match now {
                    Health::Lost => this.fence_all("this host lost its lease in etcd").await,
                    Health::Up { .. } if !was_up => this.hold_again().await,
                    _ => {}
                }
                was_up = matches!(now, Health::Up { .. });
                if health.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    pub(super) fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.inner.cluster.get()
    }

    /// This host's name in the cluster, when in one.
    pub fn node(&self) -> Option<&str> {
        self.cluster().map(|c| c.node())
    }

    /// Whether this host may write cluster volumes now.
    pub fn cluster_health(&self) -> Option<Health> {
        self.cluster().map(|c| *c.health().borrow())
    }

    /// The hosts of the cluster and what each holds.
    pub async fn cluster_nodes(&self) -> Result<Vec<(crate::cluster::Node, Vec<String>)>> {
        let Some(cluster) = self.cluster() else {
            return Err(Error::InvalidState("this host is not in a cluster ([cluster])".into()));
        };
        let nodes = cluster.nodes().await?;
        let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for v in self.list().iter().filter(|v| v.cluster.is_some()) {
            for h in cluster.holders(&v.name) {
                held.entry(h.node).or_default().push(v.name.clone());
            }
        }
        Ok(nodes
            .into_iter()
            .map(|n| {
                let holds = held.remove(&n.node).unwrap_or_default();
                (n, holds)
            })
            .collect())
    }

    /// The hosts that hold `v` now, from memory.
    pub fn holders(&self, v: &Volume) -> Vec<crate::cluster::Holder> {
        match (self.cluster(), &v.cluster) {
            (Some(c), Some(_)) => c.holders(&v.name),
            _ => Vec::new(),
        }
    }

    pub fn lease_state(&self, v: &Volume) -> LeaseState {
        let (Some(c), Some(_)) = (self.cluster(), &v.cluster) else { return LeaseState::Local };
        if self.is_fenced(v.id) {
            return LeaseState::Fenced;
        }
        let holders = c.holders(&v.name);
        if holders.iter().any(|h| h.node == c.node()) {
            LeaseState::HeldHere
        } else if holders.is_empty() {
            LeaseState::Free
        } else {
            LeaseState::HeldElsewhere
        }
    }

    fn is_fenced(&self, id: i64) -> bool {
        self.inner.fenced.lock().unwrap_or_else(|p| p.into_inner()).contains(&id)
    }

    pub(super) fn unfence(&self, id: i64) {
        self.inner.fenced.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// The membership a new volume gets: in a cluster, every volume but
    /// a host path or one made with `-o cluster=false`.
    pub(super) fn new_membership(
        &self,
        opts: &BTreeMap<String, String>,
        host_path: bool,
    ) -> Result<Option<Membership>> {
        let Some(c) = self.cluster() else { return Ok(None) };
        // `-o cluster=false`: this host's alone, working while etcd is down.
        if host_path || opts.get("cluster").is_some_and(|v| v == "false") {
            return Ok(None);
        }
        let mut key = [0u8; 8];
        getrandom::fill(&mut key).map_err(|e| Error::internal("drawing a volume key", e))?;
        Ok(Some(Membership { key: hex::encode(key), home: c.node().to_string() }))
    }

    /// Registers a volume just made here; on failure the caller undoes it.
    pub(super) async fn register(&self, v: &Volume) -> Result<()> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(()) };
        c.register(record_of(v, m)).await?;
        Ok(())
    }

    /// Takes a volume out of the registry before it goes to the trash.
    pub(super) async fn unregister(&self, v: &Volume) -> Result<()> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(()) };
        c.unregister(&v.name, &m.key).await?;
        Ok(())
    }

    /// Whether this host has the bytes of `v` (a shared pool, or its
    /// home): otherwise its row here only mirrors the registry.
    pub(super) fn bytes_here(&self, v: &Volume) -> bool {
        match (&v.cluster, self.node()) {
            (Some(m), Some(me)) => m.home == me || self.shared(&v.pool),
            _ => true,
        }
    }

    fn shared(&self, pool: &str) -> bool {
        self.inner.pools.get(pool).is_some_and(|p| p.config.scope == Scope::Global)
    }

    /// Before a Mount of a cluster volume: this host holds it in etcd,
    /// waiting up to `mount_wait` for another holder to let go.
    pub(super) async fn hold_for_mount(&self, v: &Volume, mounts: u32) -> Result<()> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(()) };
        if self.is_fenced(v.id) {
            return Err(Error::InvalidState(format!(
                "volume {:?} is fenced (read-only) since this host lost its lease while it was \
                 mounted; stop its containers here, then start them again",
                v.name
            )));
        }
        if !self.bytes_here(v) {
            return Err(Error::InvalidState(format!(
                "volume {:?} lives in pool {:?} on host {}, which is not shared: mount it there",
                v.name, v.pool, m.home
            )));
        }
        if !matches!(*c.health().borrow(), Health::Up { .. }) {
            return Err(ClusterError::Unreachable("this host holds no lease now".into()).into());
        }
        let exclusive = access_of(v).exclusive();
        let deadline = Instant::now() + c.mount_wait();
        loop {
            let notified = self.inner.holders_changed.notified();
            match c.hold(&v.name, mounts, exclusive).await {
                Err(ClusterError::Held { .. }) if Instant::now() < deadline => {
                    // Woken when the holders change (the watch), or soon anyway.
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ =
                        tokio::time::timeout(left.min(Duration::from_millis(500)), notified).await;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Before a job on a cluster volume's bytes (a snapshot, a revert, a
    /// backup, a restore, a deallocation): this host holds the volume for
    /// the job, so that no other host writes it meanwhile. `None` when it
    /// needs no holding, or this host holds it already (mounted here).
    pub(super) async fn hold_for_job(&self, v: &Volume) -> Result<Option<JobHold>> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(None) };
        if !self.bytes_here(v) {
            return Err(Error::InvalidState(format!(
                "volume {:?} lives in pool {:?} on host {}, which is not shared: run this there",
                v.name, v.pool, m.home
            )));
        }
        if c.holders(&v.name).iter().any(|h| h.node == c.node()) {
            return Ok(None);
        }
        c.hold(&v.name, 0, true).await?;
        Ok(Some(JobHold { ballast: self.clone(), name: v.name.clone() }))
    }

    /// After an Unmount that was not the last: the count others see.
    pub(super) async fn hold_fewer(&self, v: &Volume) {
        let (Some(c), Some(_)) = (self.cluster(), &v.cluster) else { return };
        if self.is_fenced(v.id) {
            return;
        }
        let _ = c.hold(&v.name, v.mount_count(), access_of(v).exclusive()).await;
    }

    /// After the last Unmount, or a failed first Mount: lets go in etcd.
    /// A failure only delays others until the lease runs out.
    pub(super) async fn release(&self, v: &Volume) {
        let (Some(c), Some(_)) = (self.cluster(), &v.cluster) else { return };
        self.unfence(v.id);
        if let Err(e) = c.release(&v.name).await {
            tracing::warn!(volume = %v.name, error = %e, "cluster: cannot release; the lease's expiry will");
        }
    }

    async fn apply(&self, change: Change) {
        match change {
            Change::All(records) => {
                let keys: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
                let gone: Vec<_> = self
                    .list()
                    .into_iter()
                    .filter(|v| v.cluster.as_ref().is_some_and(|m| !keys.contains(m.key.as_str())))
                    .collect();
                for v in gone {
                    let key = v.cluster.as_ref().map(|m| m.key.clone()).unwrap_or_default();
                    self.gone_elsewhere(&v.name, &key).await;
                }
                for r in records {
                    self.mirror(r).await;
                }
            }
            Change::Put(r) => self.mirror(r).await,
            Change::Deleted { name, key } => self.gone_elsewhere(&name, &key).await,
            Change::Holders { name, holders } => {
                self.inner.holders_changed.notify_waiters();
                let Some(c) = self.cluster() else { return };
                let Ok(v) = self.get(&name) else { return };
                let mine = holders.iter().any(|h| h.node == c.node());
                // Revoked by hand, or by a lease that expired: stop writing.
                let up = matches!(*c.health().borrow(), Health::Up { .. });
                if v.cluster.is_some() && v.mount_count() > 0 && !mine && up {
                    self.fence(&v, "its holding in etcd was removed").await;
                }
            }
        }
    }

    /// Makes the registry's volume known here.
    async fn mirror(&self, r: Record) {
        let _claim = self.inner.locks.lock(Key::Name(r.name.clone())).await;
        if let Ok(v) = self.get(&r.name) {
            match &v.cluster {
                Some(m) if m.key == r.key => return,
                Some(m) => {
                    // An older volume of that name went while we did not look.
                    let key = m.key.clone();
                    drop(_claim);
                    self.gone_elsewhere(&r.name, &key).await;
                    return Box::pin(self.mirror(r)).await;
                }
                None => {
                    tracing::warn!(volume = %r.name, home = %r.home, "cluster: a local volume has the name of a cluster volume; the local one stays");
                    return;
                }
            }
        }
        let v = Volume {
            id: 0,
            name: r.name.clone(),
            description: r.description.clone(),
            driver_opts: r.opts.clone(),
            pool: r.pool.clone(),
            state: State::Inactive,
            transitioning: Transitioning::No,
            transitioning_message: String::new(),
            created_ms: r.created_ms,
            removed_ms: None,
            size_bytes: r.size_bytes,
            used_bytes: 0,
            mounts: BTreeMap::new(),
            host_path: None,
            fill_from: None,
            written_ms: now_ms(),
            schedule: Default::default(),
            archived_in: None,
            cluster: Some(Membership { key: r.key.clone(), home: r.home.clone() }),
        };
        let saved = self
            .blocking(move |this| {
                let mut v = v;
                v.id = this.inner.store.insert(&v)?;
                this.inner.store.save(&v)?;
                Ok(v)
            })
            .await;
        match saved {
            Ok(v) => {
                tracing::info!(volume = %v.name, home = %r.home, "cluster: volume mirrored");
                self.publish(v);
            }
            Err(e) => tracing::warn!(volume = %r.name, error = %e, "cluster: cannot mirror"),
        }
    }

    /// The registry no longer has the volume `name` with `key`: removed on
    /// another host. Its trash copy is where its bytes are: here when
    /// this is its home in a local pool; otherwise this row is closed.
    async fn gone_elsewhere(&self, name: &str, key: &str) {
        let Ok((guard, v)) = self.lock_live(name).await else { return };
        let Some(m) = &v.cluster else { return };
        if !key.is_empty() && m.key != key {
            return;
        }
        if v.mount_count() > 0 {
            tracing::warn!(
                volume = name,
                "cluster: removed elsewhere while mounted here; kept until unmounted"
            );
            return;
        }
        let home_here = self.node() == Some(m.home.as_str()) && !self.shared(&v.pool);
        let result = if home_here {
            self.remove_locked(&v, guard).await.map(drop)
        } else {
            let mut closed = (*v).clone();
            closed.state = State::Purged;
            closed.removed_ms = Some(now_ms());
            self.blocking(move |this| {
                this.inner.store.save(&closed)?;
                Ok(closed)
            })
            .await
            .map(|v| {
                self.publish(v);
            })
        };
        match result {
            Ok(()) => tracing::info!(volume = name, "cluster: removed on another host"),
            Err(e) => tracing::warn!(volume = name, error = %e, "cluster: cannot follow a removal"),
        }
    }

    /// After (re)gaining a lease: holds again what is mounted here (the
    /// daemon restarted under running containers); what another host
    /// took meanwhile is fenced.
    async fn hold_again(&self) {
        let Some(c) = self.cluster() else { return };
        for v in self.list().into_iter().filter(|v| v.cluster.is_some() && v.mount_count() > 0) {
            if self.is_fenced(v.id) {
                continue;
            }
            let exclusive = access_of(&v).exclusive();
            match c.hold(&v.name, v.mount_count(), exclusive).await {
                Ok(()) => {}
                Err(ClusterError::Held { node, .. }) => {
                    self.fence(&v, &format!("host {node} holds it now")).await
                }
                Err(e) => {
                    tracing::warn!(volume = %v.name, error = %e, "cluster: cannot hold again")
                }
            }
        }
    }

    async fn fence_all(&self, why: &str) {
        for v in self.list().into_iter().filter(|v| v.cluster.is_some() && v.mount_count() > 0) {
            if !self.is_fenced(v.id) {
                self.fence(&v, why).await;
            }
        }
    }

    /// Stops this host writing `v`: every mount of it read-only, or its
    /// writers killed (see `cluster/fence.rs`).
    async fn fence(&self, v: &Volume, why: &str) {
        self.inner.fenced.lock().unwrap_or_else(|p| p.into_inner()).insert(v.id);
        let Some(dir) = self.mountpoint(v) else { return };
        let name = v.name.clone();
        let reason = why.to_string();
        let done = tokio::task::spawn_blocking(move || crate::cluster::fence::fence(&dir)).await;
        match done {
            Ok(Ok(f)) => tracing::warn!(
                volume = %name, why = %reason, remounted = f.remounted, killed = f.killed,
                failed = ?f.failed, "cluster: fenced"
            ),
            Ok(Err(e)) => tracing::error!(volume = %name, error = %e, "cluster: fencing failed"),
            Err(e) => tracing::error!(volume = %name, error = %e, "cluster: fencing failed"),
        }
    }
}

impl Ballast {
    /// Who may mount a cluster volume at once.
    pub fn access_mode(&self, v: &Volume) -> crate::cluster::Access {
        access_of(v)
    }
}

/// The access mode a volume's options ask for.
pub(super) fn access_of(v: &Volume) -> crate::cluster::Access {
    access_in(&v.driver_opts)
}

/// The access mode driverOpts ask for (`-o access-mode=`).
pub(super) fn access_in(opts: &BTreeMap<String, String>) -> crate::cluster::Access {
    opts.get("access-mode")
        .and_then(|a| crate::cluster::Access::parse(a))
        .unwrap_or(crate::cluster::Access::SingleHostRw)
}

fn record_of(v: &Volume, m: &Membership) -> Record {
    Record {
        name: v.name.clone(),
        key: m.key.clone(),
        pool: v.pool.clone(),
        opts: v.driver_opts.clone(),
        description: v.description.clone(),
        size_bytes: v.size_bytes,
        home: m.home.clone(),
        created_ms: v.created_ms,
    }
}

/// This host's holding of a volume for a job; let go when dropped, unless
/// the volume was mounted here meanwhile (the mount holds it then).
pub(super) struct JobHold {
    ballast: Ballast,
    name: String,
}

impl Drop for JobHold {
    fn drop(&mut self) {
        let (this, name) = (self.ballast.clone(), std::mem::take(&mut self.name));
        tokio::spawn(async move {
            let Ok(v) = this.get(&name) else { return };
            if v.mount_count() == 0 {
                this.release(&v).await;
            }
        });
    }
}
