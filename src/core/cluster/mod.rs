//! The core in a cluster (docs/cluster.md): every host keeps a row for
//! every cluster volume, mirrored from the registry (`mirror.rs`), so
//! that Docker's Get and List are answered from memory as for local
//! volumes; a Mount or a job holds the volume in etcd first (`hold.rs`);
//! a host that lost its lease fences what it mounts (`fencing.rs`). The
//! cluster is reached through [`Cluster`] alone.

mod fencing;
mod hold;
mod mirror;
mod moves;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::Ballast;
use crate::cluster::{Access, Cluster, Error as ClusterError, Health, Holder, Node, Ticket};
use crate::pool::Scope;
use crate::volume::{Membership, Volume};
use crate::{Error, Result};

/// What the core keeps of the cluster, beside the handle's other state.
#[derive(Default)]
pub(super) struct State {
    pub cluster: std::sync::OnceLock<Arc<dyn Cluster>>,
    /// Volumes fenced here: mounted read-only since this host lost its
    /// right to them; no new Mount until the last Unmount.
    pub fenced: Mutex<HashSet<i64>>,
    /// Jobs running on each volume's bytes, holding it (see `hold.rs`).
    pub jobs: Mutex<HashMap<i64, u32>>,
    /// The last holding of each volume: its lease and etcd revision.
    pub tickets: Mutex<HashMap<i64, Ticket>>,
    /// Woken when a volume's holders change, for Mounts that wait.
    pub holders_changed: tokio::sync::Notify,
    /// Volumes this host is handing over (`moves.rs`), to which host:
    /// Mounts here are refused meanwhile.
    pub moving: Mutex<HashMap<i64, String>>,
    /// The archives the registry names, by cluster key (`moves.rs`).
    pub archives: Mutex<HashMap<String, crate::cluster::Archive>>,
    /// Woken when a volume's home changes, for Mounts that wait for it.
    pub moved: tokio::sync::Notify,
    /// Releases in etcd started and not yet ended (`hold.rs`), which a
    /// clean stop waits for.
    pub releasing: std::sync::atomic::AtomicUsize,
    /// Woken when one of them ends.
    pub released: tokio::sync::Notify,
}

/// Where a removed cluster volume's bytes go.
pub(super) enum Leave {
    /// Into this host's trash.
    Trash,
    /// Elsewhere (or nowhere): this host's row is closed.
    Close,
}

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
            ClusterError::Taken { .. } | ClusterError::Moved { .. } => {
                Error::Conflict(e.to_string())
            }
            ClusterError::Held { ref name, ref node, mounts } => Error::InUse {
                volume: name.clone(),
                mounts: mounts as usize,
                message: format!(
                    "volume {name:?} is in use on host {node} ({mounts} mount(s)); stop its \
                     containers there first"
                ),
            },
            ClusterError::Unknown { .. } => Error::NotFound(e.to_string()),
            ClusterError::CalledOff { .. } => Error::Conflict(e.to_string()),
            ClusterError::Unreachable(_) | ClusterError::NoLease | ClusterError::Refused(_) => {
                Error::InvalidState(format!(
                    "{e}; cluster volumes cannot change until it answers (volumes of this \
                     host alone can)"
                ))
            }
        }
    }
}

impl Ballast {
    /// Joins the cluster: new volumes are registered from now on, the
    /// registry's volumes are mirrored here, Mounts hold volumes in etcd,
    /// and a lost lease fences this host's mounts.
    pub fn join(&self, cluster: Arc<dyn Cluster>) {
        let changes = cluster.changes();
        if self.inner.cluster.cluster.set(cluster.clone()).is_err() {
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
        self.watch_health(cluster);
    }

    pub(super) fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.inner.cluster.cluster.get()
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
    pub async fn cluster_nodes(&self) -> Result<Vec<(Node, Vec<String>)>> {
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
    pub fn holders(&self, v: &Volume) -> Vec<Holder> {
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

    /// Who may mount a volume at once.
    pub fn access_mode(&self, v: &Volume) -> Access {
        access_of(v)
    }

    fn is_fenced(&self, id: i64) -> bool {
        self.inner.cluster.fenced.lock().unwrap_or_else(|p| p.into_inner()).contains(&id)
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

    /// Registers a volume just made here. When it fails the caller undoes
    /// the volume; after an unanswered try, its record may be in etcd
    /// all the same, so it is taken out again first (as far as etcd
    /// answers: a record left behind names this host as its home).
    pub(super) async fn register(&self, v: &Volume) -> Result<()> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(()) };
        match c.register(mirror::record_of(v, m)).await {
            Ok(()) => Ok(()),
            Err(e @ (ClusterError::Unreachable(_) | ClusterError::Refused(_))) => {
                let _ = c.unregister(&v.name, &m.key).await;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a volume out of the registry as it is removed here, and says
    /// which trash takes its bytes: a local pool's home's, a shared
    /// pool's remover's (the host whose call took the record out).
    pub(super) async fn leave_cluster(&self, v: &Volume) -> Result<Leave> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(Leave::Trash) };
        // This host's own holding, if a release is still on its way (it
        // waits for the lock the caller holds): let go of it now, since
        // the registry refuses a removal while any host holds the volume.
        self.release_if_idle(v).await;
        let unregister = || c.unregister(&v.name, &m.key);
        let removed_here = self.while_held(hold::RELEASE_WAIT, unregister).await?;
        Ok(self.trash_for(v, removed_here))
    }

    /// Which trash a cluster volume removed in the cluster goes to.
    fn trash_for(&self, v: &Volume, removed_here: bool) -> Leave {
        let Some(m) = &v.cluster else { return Leave::Trash };
        let home_here = self.node() == Some(m.home.as_str());
        let ours = if self.shared(&v.pool) { removed_here } else { home_here };
        if ours { Leave::Trash } else { Leave::Close }
    }

    /// Whether this host has the bytes of `v` (a shared pool, or its
    /// home): otherwise its row here only mirrors the registry.
    pub(super) fn bytes_here(&self, v: &Volume) -> bool {
        match (&v.cluster, self.node()) {
            (Some(m), Some(me)) => m.home == me || self.shared(&v.pool),
            _ => true,
        }
    }

    pub(super) fn shared(&self, pool: &str) -> bool {
        self.inner.pools.get(pool).is_some_and(|p| p.config.scope == Scope::Global)
    }
}

/// The access mode a volume's options ask for.
pub(super) fn access_of(v: &Volume) -> Access {
    access_in(&v.driver_opts)
}

/// The access mode driverOpts ask for (`-o access-mode=`).
pub(super) fn access_in(opts: &BTreeMap<String, String>) -> Access {
    opts.get("access-mode").and_then(|a| Access::parse(a)).unwrap_or(Access::SingleHostRw)
}
