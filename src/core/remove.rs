//! Remove (a soft delete into the trash), restore (back out of it) and
//! purge (the data is destroyed; the record stays as a tombstone so its id
//! is never reused).
//!
//! Removal frees the name at once; the data stays for `trash_retention`,
//! after which the janitor purges it, oldest first and sooner when a pool
//! runs short of space. A crash during a purge leaves the volume
//! `removed`, and the next janitor pass finishes the job.

use std::sync::Arc;
use std::time::Duration;

use super::Ballast;
use super::actions::Action;
use super::locks::{Guard, Key};
use crate::snapshot::SnapState;
use crate::units::now_ms;
use crate::volume::{State, Transitioning, Volume, validate_name, validate_new_name};
use crate::{Error, Result};

/// Below this share of free space, a pool's trash is purged early.
const LOW_SPACE_PERCENT: u64 = 10;

impl Ballast {
    /// Docker's Remove. Idempotent: a volume that is not there (or that a
    /// concurrent Remove took first) is fine. One activated through the
    /// admin API but not mounted is detached first.
    pub async fn remove(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let Ok(mut seen) = self.get(name) else { return Ok(()) };
        if self.cancel_restore(seen.id).await {
            let Ok(now) = self.get(name) else { return Ok(()) };
            seen = now;
        }
        // Refused at once rather than after the job: Docker must not wait.
        Action::Remove.check(&seen).or_else(|e| match seen.state {
            State::Active if seen.mount_count() == 0 => Ok(()),
            _ => Err(e),
        })?;
        let (guard, mut v) = match self.lock_live(name).await {
            Ok(locked) => locked,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if v.state == State::Active && v.mount_count() == 0 {
            v = self
                .transition_locked(&v, Action::Deactivate, |this, v| {
                    this.storage(v)?.deactivate(&v.storage_key()).map_err(|e| {
                        Error::internal(format!("deactivating volume {:?}", v.name), e)
                    })?;
                    v.state = State::Inactive;
                    Ok(())
                })
                .await?;
        }
        self.remove_locked(&v, guard).await.map(|_| ())
    }

    /// The `remove` action: into the trash.
    pub async fn remove_volume(&self, reference: &str) -> Result<Arc<Volume>> {
        self.cancel_restore(self.find(reference)?.id).await;
        let (guard, v) = self.lock_ref(reference).await?;
        self.remove_locked(&v, guard).await
    }

    pub(super) async fn remove_locked(&self, v: &Volume, guard: Guard) -> Result<Arc<Volume>> {
        // Out of the cluster first: refused while any host holds it. Its
        // bytes go to one trash in the cluster, which may be another's.
        match self.leave_cluster(v).await? {
            super::cluster::Leave::Trash => self.trash_locked(v, guard).await,
            super::cluster::Leave::Close => self.close_row(v).await,
        }
    }

    /// Into the trash, under `guard`.
    pub(super) async fn trash_locked(&self, v: &Volume, guard: Guard) -> Result<Arc<Volume>> {
        let v = self
            .transition_locked(v, Action::Remove, |_, v| {
                v.state = State::Removed;
                v.removed_ms = Some(now_ms());
                // In the trash, `transitioning` speaks of the purge alone
                // (an old revert's error would read as a purge begun).
                v.transitioning = Transitioning::No;
                v.transitioning_message.clear();
                Ok(())
            })
            .await?;
        if self.inner.trash_retention.is_zero() {
            // The removal stands either way; a failed purge is recorded on
            // the record and retried by the janitor.
            let purged = self.purge_now((*v).clone()).await.map(Arc::new).unwrap_or(v);
            drop(guard);
            return Ok(purged);
        }
        Ok(v)
    }

    /// Cancels the restore from a backup writing into volume `id`, if one
    /// runs, and waits for its job to end (up to 20 s: the pieces already
    /// read from the repository are written first): a backup that cannot be restored
    /// must not keep its volume. Returns whether one was cancelled.
    async fn cancel_restore(&self, id: i64) -> bool {
        if !self.inner.locks.cancel_restore(id) {
            return false;
        }
        tracing::info!(volume = id, "removal cancels the restore into the volume");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let settled = self.wait_for(Some(deadline), |this| {
            let settled =
                this.volume_by_id(id).is_ok_and(|v| v.transitioning != Transitioning::Yes);
            (settled && !this.inner.locks.is_restoring(id)).then_some(())
        });
        settled.await;
        true
    }

    /// The `restore` action: out of the trash, under its old name or `name`.
    pub async fn restore(&self, reference: &str, name: Option<String>) -> Result<Arc<Volume>> {
        let found = self.find(reference)?;
        let name = name.unwrap_or_else(|| found.name.clone());
        validate_new_name(&name)?;
        let _claim = self.inner.locks.lock(Key::Name(name.clone())).await;
        let _path_claim = match &found.host_path {
            Some(p) => Some(self.claim_host_path(p).await?),
            None => None,
        };
        let _guard = self.inner.locks.lock(Key::Volume(found.id)).await;
        let mut v = (*self.volume_by_id(found.id)?).clone();
        self.check(Action::Restore, &v)?;
        if let Ok(holder) = self.get(&name) {
            return Err(Error::Conflict(format!(
                "the name {name:?} is taken by volume {}; restore under another name",
                holder.public_id()
            )));
        }
        let has_storage = self.storage(&v)?.exists(&v.storage_key())?;
        v.name = name;
        v.state = if has_storage { State::Inactive } else { State::Requested };
        v.removed_ms = None;
        // A cluster volume is everyone's again, if its name is still free.
        self.register(&v).await?;
        let v = self.save(v).await?;
        tracing::info!(volume = %v.name, id = %v.public_id(), "volume restored from the trash");
        Ok(self.publish(v))
    }

    /// A cluster volume whose bytes another host's trash takes: its row
    /// here is closed (a tombstone), nothing is destroyed.
    pub(super) async fn close_row(&self, v: &Volume) -> Result<Arc<Volume>> {
        let mut closed = v.clone();
        closed.state = State::Purged;
        closed.removed_ms = Some(now_ms());
        let closed = self.save(closed).await?;
        Ok(self.publish(closed))
    }

    /// The `purge` action: destroys a removed volume's data now.
    pub async fn purge(&self, reference: &str) -> Result<Arc<Volume>> {
        let (_guard, v) = self.lock_ref(reference).await?;
        self.check(Action::Purge, &v)?;
        self.purge_now((*v).clone()).await.map(Arc::new)
    }

    /// Purges a removed volume found by the janitor, under its lock and
    /// only if it is still removed (a restore may have taken it back).
    async fn purge_if_removed(&self, id: i64, removed_before: Option<i64>) -> bool {
        let _guard = self.inner.locks.lock(Key::Volume(id)).await;
        let Ok(v) = self.volume_by_id(id) else { return false };
        let due = removed_before.is_none_or(|cutoff| v.removed_ms.is_some_and(|t| t <= cutoff));
        // The same checks as the purge action: a snapshot being read stays.
        due && self.check(Action::Purge, &v).is_ok() && self.purge_now((*v).clone()).await.is_ok()
    }

    /// Destroys a removed volume's data and its snapshots, and keeps the
    /// record as a tombstone.
    async fn purge_now(&self, mut v: Volume) -> Result<Volume> {
        let (id, name) = (v.public_id(), v.name.clone());
        let snapshots = self.snapshots(Some(v.id));
        let res = self
            .blocking(move |this| {
                // Said on disk before anything is deleted: a purge cut by a
                // crash is finished by the janitor, never restored half-gone.
                v.transitioning = Transitioning::Yes;
                v.transitioning_message = "purging: deleting the data".into();
                this.inner.store.save(&v)?;
                let destroyed = this.pool(&v.pool).and_then(|pool| {
                    for snap in &snapshots {
                        pool.backend()?.delete_snapshot(&snap.storage_key())?;
                        let mut snap = (**snap).clone();
                        snap.state = SnapState::Removed;
                        this.inner.store.save_snapshot(&snap)?;
                        this.publish_snapshot(snap);
                    }
                    this.storage(&v)?.destroy(&v.storage_key()).map_err(|e| {
                        Error::internal(format!("purging volume {}", v.public_id()), e)
                    })
                });
                match destroyed {
                    Ok(()) => {
                        v.state = State::Purged;
                        v.transitioning = Transitioning::No;
                        v.transitioning_message.clear();
                        this.inner.store.save(&v)?;
                        Ok(v)
                    }
                    Err(e) => {
                        // Say why on the record; the janitor tries again later.
                        v.transitioning = Transitioning::Error;
                        v.transitioning_message = e.to_string();
                        this.inner.store.save(&v)?;
                        Err(e)
                    }
                }
            })
            .await;
        match &res {
            Ok(_) => tracing::info!(volume = %name, %id, "volume purged"),
            Err(e) => tracing::error!(volume = %name, %id, error = %e, "purge failed"),
        }
        res
    }

    /// Purges every removed volume older than the retention, then the
    /// oldest removed volumes of any pool with less than 10% free space.
    /// Returns how many were purged.
    pub async fn purge_expired(&self) -> Result<usize> {
        let retention = i64::try_from(self.inner.trash_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(retention);
        let expired = self.blocking(move |this| this.inner.store.removed_before(cutoff)).await?;
        let mut purged = 0;
        // Purges a crash cut short come first, whatever their age.
        let cut = self.blocking(|this| this.inner.store.purges_cut_short()).await?;
        for v in cut {
            if self.purge_if_removed(v.id, None).await {
                purged += 1;
            }
        }
        for v in expired {
            if self.purge_if_removed(v.id, Some(cutoff)).await {
                purged += 1;
            }
        }
        for pool in self.inner.pools.keys() {
            match self.purge_for_space(pool).await {
                Ok(n) => purged += n,
                // An unavailable pool has nothing to purge from yet.
                Err(e) => tracing::debug!(pool, error = %e, "space check skipped"),
            }
        }
        Ok(purged)
    }

    async fn purge_for_space(&self, pool: &str) -> Result<usize> {
        let short = |this: &Ballast| -> Result<bool> {
            let space = this.pool(pool)?.backend()?.space()?;
            Ok(space.capacity > 0 && space.free * 100 < space.capacity * LOW_SPACE_PERCENT)
        };
        if !short(self)? {
            return Ok(0);
        }
        // Oldest removal first.
        let mut trash: Vec<Volume> = self
            .inner
            .store
            .in_state(State::Removed)?
            .into_iter()
            .filter(|v| v.pool == pool)
            .collect();
        trash.sort_by_key(|v| v.removed_ms);
        let mut purged = 0;
        for v in trash {
            if !short(self)? {
                break;
            }
            tracing::warn!(pool, volume = %v.name, "pool has under 10% free: purging the oldest removed volume early");
            if self.purge_if_removed(v.id, None).await {
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// How often the janitor looks for expired volumes and short pools:
    /// often enough to honour short retentions and to react to a filling
    /// disk within seconds; a pass is one query and a statfs per pool.
    pub fn janitor_period(&self) -> Duration {
        (self.inner.trash_retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(10))
    }
}
