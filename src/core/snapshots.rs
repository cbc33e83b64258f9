//! Snapshots: take, remove, revert to, and list them.
//!
//! Taking a snapshot and reverting are long operations (a `dir` pool
//! copies every file), so both answer at once and finish as a background
//! job that reports progress on the resource (`transitioning`,
//! `transitioningMessage` on the volume; `state`/`message` on the
//! snapshot). A revert holds the volume's lock until it is done, so a
//! Mount can never see a half-reverted tree: Docker's Mount is refused
//! while the volume is transitioning, and one that slipped in waits.
//! A snapshot in progress does not hold the lock (containers keep
//! mounting), but it keeps revert, remove and purge away.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Ballast;
use super::actions::Action;
use super::locks::{Key, Lease};
use crate::public_id::Kind;
use crate::snapshot::{SnapState, Snapshot};
use crate::units::now_ms;
use crate::volume::{Transitioning, Volume, validate_new_name};
use crate::{Error, Result};

/// What the actions of snapshots and backups depend on besides their
/// own records (see [`Ballast::holds`]).
#[derive(Debug, Default)]
pub struct Holds {
    /// Live volumes a job (a revert, a restore, a fill) runs on.
    busy: HashSet<i64>,
    /// Backups holding the data of a deallocated volume.
    pub(super) archives: HashSet<i64>,
}

impl Ballast {
    /// Snapshots, optionally of one volume, oldest first.
    pub fn snapshots(&self, volume_id: Option<i64>) -> Vec<Arc<Snapshot>> {
        let snaps = self.snaps_read();
        snaps.values().filter(|s| volume_id.is_none_or(|v| s.volume_id == v)).cloned().collect()
    }

    /// Snapshot counts per volume id, and the volumes a job is reading
    /// (a snapshot being taken, a fill from them): what rendering many
    /// volumes needs, in one pass.
    pub fn snapshot_summary(&self) -> (HashMap<i64, usize>, HashSet<i64>) {
        let mut counts = HashMap::new();
        let mut running: HashSet<i64> = self.inner.locks.leased_volumes().into_iter().collect();
        for s in self.snaps_read().values() {
            *counts.entry(s.volume_id).or_insert(0) += 1;
            if s.state == SnapState::Creating {
                running.insert(s.volume_id);
            }
        }
        (counts, running)
    }

    /// How many snapshots a volume has.
    pub fn snapshot_count(&self, volume_id: i64) -> usize {
        self.snaps_read().values().filter(|s| s.volume_id == volume_id).count()
    }

    /// A snapshot by id (`1s7`) or by name (when that name is unique).
    pub fn find_snapshot(&self, reference: &str) -> Result<Arc<Snapshot>> {
        self.find_snapshot_among(reference, |_| true)
    }

    /// A snapshot of volume `volume_id` by id, or by a name unique among
    /// that volume's snapshots: names are not unique across volumes (each
    /// may have its own `before`), and a caller that names the volume
    /// means its snapshot. A name the volume has none of is looked up
    /// among all, so that another volume's is reported as such.
    pub fn find_snapshot_of(&self, volume_id: i64, reference: &str) -> Result<Arc<Snapshot>> {
        let own = |s: &Snapshot| s.volume_id == volume_id;
        let has_own = self.snaps_read().values().any(|s| own(s) && s.name == reference);
        if has_own {
            self.find_snapshot_among(reference, own)
        } else {
            self.find_snapshot(reference)
        }
    }

    /// A snapshot by id, or by a name unique among those `among` keeps.
    fn find_snapshot_among(
        &self,
        reference: &str,
        among: impl Fn(&Snapshot) -> bool,
    ) -> Result<Arc<Snapshot>> {
        let snaps = self.snaps_read();
        if let Some(id) = Kind::Snapshot.parse(reference) {
            return snaps
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {reference:?}")));
        }
        let named: Vec<_> = snaps.values().filter(|s| s.name == reference && among(s)).collect();
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!("no snapshot named or with id {reference:?}"))),
            many => Err(Error::InvalidInput(format!(
                "{} snapshots are named {reference:?}; use an id: {}",
                many.len(),
                many.iter().map(|s| s.public_id()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Takes a snapshot of a volume. Returns the new snapshot in state
    /// `creating`; it turns `created` (or `error`) when the copy is done.
    pub async fn snapshot(&self, reference: &str, name: Option<String>) -> Result<Arc<Snapshot>> {
        if let Some(n) = &name {
            validate_new_name(n).map_err(|e| Error::InvalidInput(format!("snapshot name: {e}")))?;
        }
        let (_guard, v) = self.lock_ref(reference).await?;
        self.check(Action::Snapshot, &v)?;
        let hold = self.hold_for_job(&v).await?;
        let mut snap = Snapshot {
            id: 0,
            name: String::new(),
            volume_id: v.id,
            state: SnapState::Creating,
            message: "copying: starting".into(),
            created_ms: now_ms(),
            size_bytes: 0,
        };
        let volume_name = v.name.clone();
        let snap = self
            .blocking(move |this| {
                snap.id = this.inner.store.insert_snapshot(&snap)?;
                snap.name = name.unwrap_or_else(|| format!("{volume_name}-{}", snap.public_id()));
                this.inner.store.save_snapshot(&snap)?;
                Ok(snap)
            })
            .await?;
        let created = self.publish_snapshot(snap.clone());
        let this = self.clone();
        let total = v.used_bytes;
        tokio::spawn(async move {
            let _hold = hold;
            let started = Instant::now();
            let progress_to = this.clone();
            let id = snap.id;
            let result = this
                .blocking(move |this| {
                    let pool = this.pool(&v.pool)?;
                    let mut report =
                        progress(total, move |msg| progress_to.snapshot_message(id, msg));
                    this.storage(&v)?
                        .snapshot(&v.storage_key(), &snap.storage_key(), &mut report)
                        .map_err(|e| {
                            Error::internal(format!("snapshot of volume {:?}", v.name), e)
                        })?;
                    let mut snap = snap;
                    snap.size_bytes =
                        pool.backend()?.snapshot_usage(&snap.storage_key()).unwrap_or(0);
                    snap.state = SnapState::Created;
                    snap.message.clear();
                    this.inner.store.save_snapshot(&snap)?;
                    Ok(snap)
                })
                .await;
            this.finish_snapshot(id, result, started.elapsed()).await;
        });
        Ok(created)
    }

    async fn finish_snapshot(&self, id: i64, result: Result<Snapshot>, took: Duration) {
        match result {
            Ok(snap) => {
                self.inner.snapshot_seconds.observe(took.as_secs_f64());
                tracing::info!(snapshot = %snap.public_id(), ?took, bytes = snap.size_bytes, "snapshot created");
                self.publish_snapshot(snap);
            }
            Err(e) => {
                tracing::error!(snapshot = id, error = %e, "snapshot failed");
                let Some(current) = self.snaps_read().get(&id).cloned() else { return };
                let mut snap = (*current).clone();
                snap.state = SnapState::Error;
                snap.message = e.to_string();
                let snap = self
                    .blocking(move |this| {
                        this.inner.store.save_snapshot(&snap)?;
                        Ok(snap)
                    })
                    .await;
                if let Ok(snap) = snap {
                    self.publish_snapshot(snap);
                }
            }
        }
    }

    /// What the actions of snapshots and backups depend on besides their
    /// own records, gathered once per answer.
    pub fn holds(&self) -> Holds {
        let live = self.live_read();
        Holds {
            busy: live
                .values()
                .filter(|v| v.transitioning == Transitioning::Yes)
                .map(|v| v.id)
                .collect(),
            archives: live.values().filter_map(|v| v.archived_in).collect(),
        }
    }

    /// Why snapshot `s` cannot be removed now, if it cannot: it is being
    /// taken, a job runs on its volume, or a volume is being filled from it.
    pub fn snapshot_removal(&self, s: &Snapshot, holds: &Holds) -> Option<Error> {
        if s.state == SnapState::Creating {
            Some(Error::InvalidState(format!("snapshot {} is still being created", s.public_id())))
        } else if holds.busy.contains(&s.volume_id) {
            Some(Error::InvalidState(format!(
                "snapshot {} cannot be removed while a job runs on its volume {}",
                s.public_id(),
                Kind::Volume.id(s.volume_id)
            )))
        } else if self.inner.locks.leased(Lease::Snapshot(s.id)) {
            Some(Error::InvalidState(format!(
                "snapshot {} is busy: a volume is being filled from it",
                s.public_id()
            )))
        } else {
            None
        }
    }

    /// Removes a snapshot and its data.
    pub async fn remove_snapshot(&self, reference: &str) -> Result<Arc<Snapshot>> {
        let snap = self.find_snapshot(reference)?;
        if let Some(e) = self.snapshot_removal(&snap, &self.holds()) {
            return Err(e);
        }
        let _guard = self.inner.locks.lock(Key::Volume(snap.volume_id)).await;
        let owner = self.volume_by_id(snap.volume_id)?;
        if owner.transitioning == Transitioning::Yes {
            return Err(Error::InvalidState(format!(
                "volume {:?} is busy: {}",
                owner.name, owner.transitioning_message
            )));
        }
        if self.inner.locks.leased(Lease::Snapshot(snap.id)) {
            return Err(Error::InvalidState(format!(
                "snapshot {} is busy: a volume is being filled from it",
                snap.public_id()
            )));
        }
        // Again by id, under the lock: the name may mean another one now.
        let current = self.snaps_read().get(&snap.id).cloned();
        let mut snap = match current {
            Some(s) if s.state != SnapState::Creating => (*s).clone(),
            Some(s) => {
                return Err(Error::InvalidState(format!(
                    "snapshot {} is still being created",
                    s.public_id()
                )));
            }
            None => {
                return Err(Error::NotFound(format!("no snapshot with id {}", snap.public_id())));
            }
        };
        let snap = self
            .blocking(move |this| {
                this.pool(&owner.pool)?.backend()?.delete_snapshot(&snap.storage_key()).map_err(
                    |e| Error::internal(format!("removing snapshot {}", snap.public_id()), e),
                )?;
                snap.state = SnapState::Removed;
                this.inner.store.save_snapshot(&snap)?;
                Ok(snap)
            })
            .await?;
        tracing::info!(snapshot = %snap.public_id(), "snapshot removed");
        Ok(self.publish_snapshot(snap))
    }

    /// Makes the volume's content the snapshot's. Returns the volume with
    /// `transitioning: "yes"`; the copy finishes in the background.
    pub async fn revert(&self, reference: &str, snapshot: &str) -> Result<Arc<Volume>> {
        let (guard, current) = self.lock_ref(reference).await?;
        let mut v = (*current).clone();
        self.check(Action::RevertToSnapshot, &v)?;
        let hold = self.hold_for_job(&v).await?;
        let snap = self.find_snapshot_of(v.id, snapshot)?;
        if snap.volume_id != v.id {
            return Err(Error::InvalidInput(format!(
                "snapshot {} belongs to another volume, not to {:?}",
                snap.public_id(),
                v.name
            )));
        }
        if snap.state != SnapState::Created {
            return Err(Error::InvalidState(format!(
                "snapshot {} is {}, not created",
                snap.public_id(),
                snap.state.as_str()
            )));
        }
        v.transitioning = Transitioning::Yes;
        v.transitioning_message =
            format!("reverting to snapshot {} ({}): starting", snap.public_id(), snap.name);
        let v = self.save(v).await?;
        let started = self.publish(v.clone());
        // The mark is on disk: every writer now refuses (or, a Mount,
        // waits) until the job ends, so the lock can go and Docker's
        // repeated Creates and Unmounts do not queue behind the copy.
        drop(guard);
        let this = self.clone();
        tokio::spawn(async move {
            let _hold = hold;
            let t = Instant::now();
            let (progress_to, id, name) = (this.clone(), v.id, v.name.clone());
            let label = format!("reverting to snapshot {} ({})", snap.public_id(), snap.name);
            let work = v.clone();
            let result = this
                .blocking(move |this| {
                    let mut report = progress(snap.size_bytes, move |msg| {
                        progress_to.volume_message(id, &name, format!("{label}: {msg}"))
                    });
                    this.storage(&work)?
                        .revert(&work.storage_key(), &snap.storage_key(), &mut report, &|| {
                            this.still_holds(id)
                        })
                        .map_err(|e| {
                            Error::internal(format!("reverting volume {:?}", work.name), e)
                        })?;
                    Ok(this.storage(&work)?.usage(&work.storage_key()).unwrap_or(0))
                })
                .await;
            let ended = format!("volume reverted in {:?}", t.elapsed());
            this.end_job(id, result, |_| {}, (&ended, "revert failed")).await;
        });
        Ok(started)
    }

    pub(super) fn snaps_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<i64, Arc<Snapshot>>> {
        self.inner.snapshots.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `s` what readers see (removed snapshots disappear).
    pub(super) fn publish_snapshot(&self, s: Snapshot) -> Arc<Snapshot> {
        let s = Arc::new(s);
        let mut snaps = self.inner.snapshots.write().unwrap_or_else(|p| p.into_inner());
        if s.state == SnapState::Removed {
            snaps.remove(&s.id);
        } else {
            snaps.insert(s.id, s.clone());
        }
        drop(snaps);
        self.inner.published.wake();
        s
    }

    fn snapshot_message(&self, id: i64, message: String) {
        let mut snaps = self.inner.snapshots.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = snaps.get_mut(&id) {
            Arc::make_mut(s).message = message;
        }
    }

    pub(super) fn volume_message(&self, id: i64, name: &str, message: String) {
        let mut live = self.inner.live.write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = live.get_mut(name).filter(|v| v.id == id) {
            Arc::make_mut(v).transitioning_message = message;
        }
    }

    /// Whether a snapshot of the volume is being taken right now.
    pub(super) fn snapshot_running(&self, volume_id: i64) -> Option<Arc<Snapshot>> {
        self.snaps_read()
            .values()
            .find(|s| s.volume_id == volume_id && s.state == SnapState::Creating)
            .cloned()
    }
}

/// A byte counter that reports "N% (x of y bytes)" at most ten times a
/// second, or "x bytes" when the total is not known (a volume never
/// measured, or one that grew since).
pub(super) fn progress(total: u64, mut report: impl FnMut(String)) -> impl FnMut(u64) {
    let mut done = 0u64;
    let mut last = Instant::now();
    move |n| {
        done += n;
        if last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            if done > total {
                report(format!("{done} bytes copied"));
            } else {
                let pct = done.saturating_mul(100).checked_div(total).map_or(0, |p| p.min(99));
                report(format!("{pct}% ({done} of {total} bytes)"));
            }
        }
    }
}
