//! Fencing, the core's side (docs/cluster.md, "Fencing"): when this
//! host's lease may have expired, or its holding of a volume vanished,
//! every mount of what it holds turns read-only (`cluster/fence.rs`)
//! before another host may hold it. Volumes are fenced side by side,
//! each bounded in time: one hung filesystem must not keep the others
//! writable.

use std::sync::Arc;
use std::time::Duration;

use super::Ballast;
use crate::cluster::{Cluster, Error as ClusterError, Health};
use crate::volume::Volume;

/// How long fencing one volume may take before it is reported stuck
/// (the work goes on; the other volumes do not wait for it).
const FENCE_TIME: Duration = Duration::from_secs(10);

impl Ballast {
    /// Follows this host's standing: a lost lease (or a new lease id,
    /// which means the old one was lost in between) fences everything
    /// mounted; the first lease, or a new one, holds again what is
    /// mounted (a daemon restarted under running containers).
    pub(super) fn watch_health(&self, cluster: Arc<dyn Cluster>) {
        let this = self.clone();
        let mut health = cluster.health();
        tokio::spawn(async move {
            let mut held: Option<i64> = None;
            loop {
                let now = *health.borrow_and_update();
                match now {
                    Health::Lost => {
                        held = None;
                        this.fence_all("this host lost its lease in etcd").await;
                    }
                    Health::Up { lease, .. } if held != Some(lease) => {
                        if held.is_some() {
                            this.fence_all("this host's lease in etcd was replaced").await;
                        }
                        held = Some(lease);
                        this.hold_again().await;
                    }
                    _ => {}
                }
                if health.changed().await.is_err() {
                    return;
                }
            }
        });
        // Started under running containers with etcd out of reach: the
        // lease of before may expire meanwhile, so fence what is mounted
        // once as long as a lease could have been safe has passed.
        let (this, ttl) = (self.clone(), cluster.lease_ttl());
        tokio::spawn(async move {
            tokio::time::sleep(ttl * 6 / 10).await;
            if matches!(this.cluster_health(), Some(Health::Connecting)) {
                this.fence_all("etcd has not answered since this daemon started").await;
            }
        });
    }

    /// Holds again what is mounted here; what another host holds by now
    /// is fenced.
    async fn hold_again(&self) {
        let Some(c) = self.cluster() else { return };
        for seen in self.list().into_iter().filter(|v| v.cluster.is_some() && v.mount_count() > 0) {
            // Under its lock, as it is now: an Unmount may have come since.
            let Ok((_guard, v)) = self.lock_live(&seen.name).await else { continue };
            if v.id != seen.id || v.mount_count() == 0 || self.is_fenced(v.id) {
                continue;
            }
            let Some(m) = &v.cluster else { continue };
            let exclusive = super::access_of(&v).exclusive();
            let again = c.hold(&v.name, &m.key, v.mount_count(), exclusive);
            match tokio::time::timeout(FENCE_TIME, again).await {
                Ok(Ok(ticket)) => self.note_ticket(v.id, ticket),
                Ok(Err(e @ (ClusterError::Held { .. } | ClusterError::Moved { .. })))
                | Ok(Err(e @ ClusterError::Unknown { .. })) => {
                    self.fence(&v, &format!("it cannot be held again: {e}")).await
                }
                // etcd went away again: the lease's loss fences it, if so.
                Ok(Err(e)) => {
                    tracing::warn!(volume = %v.name, error = %e, "cluster: cannot hold again")
                }
                Err(_) => tracing::warn!(volume = %v.name, "cluster: holding again timed out"),
            }
        }
    }

    /// The holders of `name` changed (at `revision`): if this host mounts
    /// it but no longer holds it (revoked by hand, or by the lease's
    /// expiry), it stops writing. An event older than this host's last
    /// holding says nothing of it.
    pub(super) async fn holders_changed(&self, name: &str, revision: i64) {
        self.inner.cluster.holders_changed.notify_waiters();
        let Some(c) = self.cluster() else { return };
        let Ok(v) = self.get(name) else { return };
        if v.cluster.is_none() || v.mount_count() == 0 || self.is_fenced(v.id) {
            return;
        }
        if self.ticket(v.id).is_some_and(|t| revision < t.revision) {
            return;
        }
        let mine = c.holders(name).iter().any(|h| h.node == c.node());
        if !mine && self.safe_lease().is_some() {
            self.fence(&v, "its holding in etcd was removed").await;
        }
    }

    async fn fence_all(&self, why: &str) {
        self.stop_restores();
        let mounted: Vec<_> = self
            .list()
            .into_iter()
            .filter(|v| v.cluster.is_some() && v.mount_count() > 0 && !self.is_fenced(v.id))
            .collect();
        let mut all = tokio::task::JoinSet::new();
        for v in mounted {
            let (this, why) = (self.clone(), why.to_string());
            all.spawn(async move { this.fence(&v, &why).await });
        }
        while all.join_next().await.is_some() {}
    }

    /// Stops the restores running into cluster volumes: what they built
    /// would not be swapped in anyway (see [`Ballast::still_holds`]).
    fn stop_restores(&self) {
        let jobs: Vec<i64> = self
            .inner
            .cluster
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        for id in jobs {
            if self.inner.locks.cancel_restore(id) {
                tracing::warn!(
                    volume_id = id,
                    "cluster: lease lost; the restore into the volume stops"
                );
            }
        }
    }

    /// Stops this host writing `v`: every mount of it read-only, or its
    /// writers killed (see `cluster/fence.rs`).
    pub(super) async fn fence(&self, v: &Volume, why: &str) {
        self.inner.cluster.fenced.lock().unwrap_or_else(|p| p.into_inner()).insert(v.id);
        let Some(dir) = self.mountpoint(v) else { return };
        let work = tokio::task::spawn_blocking(move || crate::cluster::fence::fence(&dir));
        match tokio::time::timeout(FENCE_TIME, work).await {
            Ok(Ok(Ok(f))) => tracing::warn!(
                volume = %v.name, why, remounted = f.remounted, killed = f.killed,
                failed = ?f.failed, "cluster: fenced"
            ),
            Ok(Ok(Err(e))) => {
                tracing::error!(volume = %v.name, error = %e, "cluster: fencing failed")
            }
            Ok(Err(e)) => tracing::error!(volume = %v.name, error = %e, "cluster: fencing failed"),
            Err(_) => {
                tracing::error!(volume = %v.name, "cluster: fencing is stuck (a hung filesystem?)")
            }
        }
    }
}
