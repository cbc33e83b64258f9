//! The volume state machine (docs/design.md, "The state table") and the
//! actions that walk it: allocate, activate, deactivate, deallocate, and
//! the description update.
//! Snapshot, revert, remove, restore and purge live in their own files but
//! are checked against the same table here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Ballast;
use super::locks::{Key, Lease};
use crate::pool::Spec;
use crate::volume::{State, Transitioning, Volume};
use crate::{Error, Result};

/// Why nothing can be backed up or restored, and what to do about it.
pub(super) const NO_TARGET: &str =
    "no backup target is configured: add a [[backup_target]] to the config";

/// An action on a volume resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allocate,
    Activate,
    Deactivate,
    Deallocate,
    Snapshot,
    RevertToSnapshot,
    RestoreFromBackup,
    Remove,
    Restore,
    Purge,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Allocate,
        Action::Activate,
        Action::Deactivate,
        Action::Deallocate,
        Action::Snapshot,
        Action::RevertToSnapshot,
        Action::RestoreFromBackup,
        Action::Remove,
        Action::Restore,
        Action::Purge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Allocate => "allocate",
            Action::Activate => "activate",
            Action::Deactivate => "deactivate",
            Action::Deallocate => "deallocate",
            Action::Snapshot => "snapshot",
            Action::RevertToSnapshot => "reverttosnapshot",
            Action::RestoreFromBackup => "restorefrombackup",
            Action::Remove => "remove",
            Action::Restore => "restore",
            Action::Purge => "purge",
        }
    }

    pub fn parse(name: &str) -> Result<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
            let all: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
            Error::InvalidInput(format!(
                "unknown volume action {name:?}; volume actions are: {}",
                all.join(", ")
            ))
        })
    }

    /// The states the action starts from.
    pub fn from_states(self) -> &'static [State] {
        use State::*;
        match self {
            Action::Allocate => &[Requested],
            Action::Activate => &[Inactive],
            Action::Deactivate => &[Active],
            Action::Deallocate => &[Inactive],
            Action::Snapshot => &[Inactive, Active],
            Action::RevertToSnapshot => &[Inactive],
            Action::RestoreFromBackup => &[Inactive, Requested],
            Action::Remove => &[Inactive, Requested],
            Action::Restore => &[Removed],
            Action::Purge => &[Removed],
        }
    }

    /// Why the action cannot run on `v` now, if it cannot: the state
    /// table, the mounts, a long operation in progress. Cheap (no
    /// message is built), since every rendered resource asks it for
    /// every action.
    fn refusal(self, v: &Volume) -> Option<Refusal> {
        if v.mount_count() > 0 && !matches!(self, Action::Snapshot | Action::Activate) {
            Some(Refusal::Mounted)
        } else if !self.from_states().contains(&v.state) {
            Some(Refusal::State)
        } else if self == Action::Deallocate && v.host_path.is_some() {
            Some(Refusal::HostPath)
        } else if self == Action::Restore && v.transitioning != Transitioning::No {
            // For a removed volume that means a purge began: part of the
            // data may be gone already, and nothing half-deleted comes back.
            Some(Refusal::Purging)
        } else if v.transitioning == Transitioning::Yes
            && !(self == Action::Purge && v.state == State::Removed)
        {
            // A purge cut by a crash (still `yes`) may be finished.
            Some(Refusal::Busy)
        } else if v.fill_from.is_some() && !matches!(self, Action::Remove | Action::Purge) {
            Some(Refusal::Unfilled)
        } else {
            None
        }
    }

    /// [`Action::refusal`], with the reason in words.
    pub fn check(self, v: &Volume) -> Result<()> {
        self.refusal(v).map_or(Ok(()), |r| Err(self.refused(r, v)))
    }

    /// A refusal of the action on `v`, in words.
    fn refused(self, refusal: Refusal, v: &Volume) -> Error {
        match refusal {
            // Containers hold it: say which, whatever the state table says.
            Refusal::Mounted => Ballast::in_use(&v.name, v),
            Refusal::State => {
                let from: Vec<_> = self.from_states().iter().map(|s| s.as_str()).collect();
                Error::InvalidState(format!(
                    "cannot {} volume {:?}: it is {}, and {} needs it {}",
                    self.name(),
                    v.name,
                    v.state.as_str(),
                    self.name(),
                    from.join(" or ")
                ))
            }
            Refusal::Busy => Error::InvalidState(format!(
                "volume {:?} is busy: {}",
                v.name, v.transitioning_message
            )),
            Refusal::Purging => Error::InvalidState(format!(
                "cannot restore volume {:?}: its purge has begun ({}), so its data is no longer \
                 whole; the purge will be finished",
                v.name, v.transitioning_message
            )),
            Refusal::Unfilled => Error::InvalidState(format!(
                "volume {:?} was never filled completely ({}); remove it and create it again",
                v.name, v.transitioning_message
            )),
            Refusal::Snapshotting => Error::InvalidState(format!(
                "volume {:?} is busy: a snapshot of it is being taken",
                v.name
            )),
            Refusal::NoBackupTarget => Error::InvalidState(NO_TARGET.into()),
            Refusal::HostPath => Error::InvalidState(format!(
                "volume {:?} is a host directory: there is no storage of ballast's to free",
                v.name
            )),
            Refusal::NoBackup => Error::InvalidState(format!(
                "deallocate would destroy the data of volume {:?}, and it has no backup newer \
                 than its last write; back it up first (ballast backup create {}) or pass \
                 \"force\": true to destroy it anyway",
                v.name, v.name
            )),
            Refusal::HostPathTaken => Error::Conflict(format!(
                "cannot restore volume {:?}: another volume already is that directory ({})",
                v.name,
                v.host_path.as_deref().unwrap_or(std::path::Path::new("")).display()
            )),
            Refusal::NameTaken => Error::Conflict(format!(
                "the name {:?} is taken by another volume; restore under another name \
                 (input `name`)",
                v.name
            )),
        }
    }

    /// Actions that read a backup, which only a configured target holds.
    fn needs_backup_target(self) -> bool {
        self == Action::RestoreFromBackup
    }

    /// Actions that take the data away from under a snapshot in progress.
    fn needs_no_snapshot_running(self) -> bool {
        matches!(
            self,
            Action::RevertToSnapshot
                | Action::RestoreFromBackup
                | Action::Remove
                | Action::Purge
                | Action::Deallocate
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Mounted,
    State,
    Busy,
    Purging,
    Unfilled,
    /// A snapshot of the volume is being taken.
    Snapshotting,
    /// No backup target is configured.
    NoBackupTarget,
    /// Deallocate of a host-path volume: there is nothing to free.
    HostPath,
    /// Deallocate without a backup of the latest data (`force` waives it).
    NoBackup,
    /// Restore under a name a live volume has (a new `name` waives it).
    NameTaken,
    /// Restore of a host-path volume whose directory a live volume is.
    HostPathTaken,
}

/// What a call brings that lifts a refusal of the call without input:
/// `force` (deallocate with no backup of the latest data) and a new
/// `name` (restore of a volume whose name was taken since). An action
/// only such input makes possible is not offered in `actions`, which
/// lists what a call without input does now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given {
    pub force: bool,
    pub renamed: bool,
}

/// What offering the actions of many volumes needs besides their
/// records, gathered once per request: the volumes a snapshot is being
/// taken of, and the time of each volume's newest backup.
#[derive(Debug, Default)]
pub struct Offers {
    snapshotting: HashSet<i64>,
    newest_backup: HashMap<i64, i64>,
}

impl Ballast {
    /// Whether `action` can run on `v` now: the state table, plus no
    /// snapshot being taken for the actions that would pull the data away
    /// from under it.
    pub(super) fn check(&self, action: Action, v: &Volume) -> Result<()> {
        action.check(v)?;
        if action.needs_backup_target() && !self.has_backup_target() {
            return Err(action.refused(Refusal::NoBackupTarget, v));
        }
        if !action.needs_no_snapshot_running() {
            return Ok(());
        }
        if let Some(s) = self.snapshot_running(v.id) {
            return Err(Error::InvalidState(format!(
                "volume {:?} is busy: snapshot {} is being taken",
                v.name,
                s.public_id()
            )));
        }
        if self.inner.locks.leased(Lease::Volume(v.id)) {
            return Err(Error::InvalidState(format!(
                "volume {:?} is busy: it is being read (a backup, or a volume filled from it)",
                v.name
            )));
        }
        // Remove (which may purge at once) and purge destroy the snapshots.
        if matches!(action, Action::Remove | Action::Purge)
            && let Some(s) = self
                .snapshots(Some(v.id))
                .into_iter()
                .find(|s| self.inner.locks.leased(Lease::Snapshot(s.id)))
        {
            return Err(Error::InvalidState(format!(
                "volume {:?} is busy: a volume is being filled from its snapshot {}",
                v.name,
                s.public_id()
            )));
        }
        Ok(())
    }

    /// What [`Ballast::actions`] needs to know of every volume at once.
    pub fn offers(&self) -> Offers {
        let (_, snapshotting) = self.snapshot_summary();
        Offers { snapshotting, newest_backup: self.newest_backups() }
    }

    /// The actions `v` offers now (a resource's `actions` map): those a
    /// call without input would carry out.
    pub fn actions(&self, v: &Volume, offers: &Offers) -> Vec<Action> {
        let bare = Given::default();
        Action::ALL.into_iter().filter(|a| self.offer(*a, v, offers, bare).is_none()).collect()
    }

    /// Whether `action` with input `given` can run on `v` now; if not,
    /// why, in words. Without input, whether it is among
    /// [`Ballast::actions`].
    pub fn available(&self, action: Action, v: &Volume, given: Given) -> Result<()> {
        let offers = self.offers();
        self.offer(action, v, &offers, given).map_or(Ok(()), |r| Err(action.refused(r, v)))
    }

    /// Why `action` is not possible on `v` now, if it is not. Cheap:
    /// asked for every action of every rendered volume.
    fn offer(&self, action: Action, v: &Volume, offers: &Offers, given: Given) -> Option<Refusal> {
        if let Some(r) = action.refusal(v) {
            return Some(r);
        }
        if offers.snapshotting.contains(&v.id) && action.needs_no_snapshot_running() {
            Some(Refusal::Snapshotting)
        } else if action.needs_backup_target() && !self.has_backup_target() {
            Some(Refusal::NoBackupTarget)
        } else if action == Action::Deallocate
            && !given.force
            && offers.newest_backup.get(&v.id).is_none_or(|t| *t < v.written_ms)
        {
            Some(Refusal::NoBackup)
        } else if action == Action::Restore && !given.renamed && self.get(&v.name).is_ok() {
            Some(Refusal::NameTaken)
        } else if action == Action::Restore && self.host_path_taken(v) {
            Some(Refusal::HostPathTaken)
        } else {
            None
        }
    }

    /// Whether a live volume is `v`'s host directory (one directory backs
    /// at most one live volume).
    fn host_path_taken(&self, v: &Volume) -> bool {
        let Some(path) = v.host_path.as_deref() else { return false };
        self.live_read().values().any(|o| o.id != v.id && o.host_path.as_deref() == Some(path))
    }

    /// requested → inactive: creates the backing storage.
    pub async fn allocate(&self, reference: &str) -> Result<Arc<Volume>> {
        self.transition(reference, Action::Allocate, allocate).await
    }

    /// inactive → active: attaches the volume on this host.
    pub async fn activate(&self, reference: &str) -> Result<Arc<Volume>> {
        self.transition(reference, Action::Activate, |this, v| {
            this.storage(v)?
                .activate(&v.storage_key())
                .map_err(|e| Error::internal(format!("activating volume {:?}", v.name), e))?;
            v.state = State::Active;
            Ok(())
        })
        .await
    }

    /// active (no mounts) → inactive: detaches it.
    pub async fn deactivate(&self, reference: &str) -> Result<Arc<Volume>> {
        self.transition(reference, Action::Deactivate, |this, v| {
            this.storage(v)?
                .deactivate(&v.storage_key())
                .map_err(|e| Error::internal(format!("deactivating volume {:?}", v.name), e))?;
            v.state = State::Inactive;
            v.written_ms = crate::units::now_ms();
            Ok(())
        })
        .await
    }

    /// inactive → requested: frees the storage. Only when a backup holds
    /// the data as it is (the next Mount restores it), or with `force`.
    pub async fn deallocate(&self, reference: &str, force: bool) -> Result<Arc<Volume>> {
        // Held under the lock, as every holding is taken: a release that
        // runs meanwhile must not delete the holding this job counts on.
        let (_guard, current) = self.lock_ref(reference).await?;
        let _hold = self.hold_for_job(&current).await?;
        // A host-path volume is refused by the state table (`check`).
        self.transition_locked(&current, Action::Deallocate, move |this, v| {
            let archive = this.backup_since(v.id, v.written_ms);
            if !force && archive.is_none() {
                return Err(Action::Deallocate.refused(Refusal::NoBackup, v));
            }
            // Recorded before the storage goes: a crash in between leaves a
            // requested volume whose leftover storage the next restore or
            // allocate replaces, never an inactive one without storage.
            v.state = State::Requested;
            v.used_bytes = 0;
            v.archived_in = archive.map(|b| b.id);
            this.inner.store.save(v)?;
            this.storage(v)?
                .destroy(&v.storage_key())
                .map_err(|e| Error::internal(format!("deallocating volume {:?}", v.name), e))?;
            Ok(())
        })
        .await
    }

    /// Changes the description, the one updatable field.
    pub async fn set_description(
        &self,
        reference: &str,
        description: String,
    ) -> Result<Arc<Volume>> {
        crate::volume::validate_description(&description)?;
        let (_guard, current) = self.lock_ref(reference).await?;
        let mut v = (*current).clone();
        v.description = description;
        let v = self.save(v).await?;
        Ok(self.publish(v))
    }

    /// Runs one state-table action under the volume's lock: check, change
    /// storage (on a blocking thread), persist, publish.
    pub(super) async fn transition<F>(
        &self,
        reference: &str,
        action: Action,
        f: F,
    ) -> Result<Arc<Volume>>
    where
        F: FnOnce(&Ballast, &mut Volume) -> Result<()> + Send + 'static,
    {
        let (_guard, current) = self.lock_ref(reference).await?;
        self.transition_locked(&current, action, f).await
    }

    /// [`Ballast::transition`] for a caller that holds the volume's lock
    /// and has read `current` under it.
    pub(super) async fn transition_locked<F>(
        &self,
        current: &Volume,
        action: Action,
        f: F,
    ) -> Result<Arc<Volume>>
    where
        F: FnOnce(&Ballast, &mut Volume) -> Result<()> + Send + 'static,
    {
        let mut v = current.clone();
        self.check(action, &v)?;
        let v = self
            .blocking(move |this| {
                f(this, &mut v)?;
                this.inner.store.save(&v)?;
                Ok(v)
            })
            .await?;
        tracing::info!(volume = %v.name, action = action.name(), state = v.state.as_str(), "volume action");
        Ok(self.publish(v))
    }

    /// Records how a job on volume `id` (a fill, a revert, a restore)
    /// ended, on its current record and under its lock, so that a change
    /// made meanwhile (a new description) is kept: done, the volume is
    /// settled with `used` bytes and a fresh last write, plus what `done`
    /// changes; failed, it is `transitioning: error` with the reason.
    /// `ended` and `failed` are the log lines.
    pub(super) async fn end_job(
        &self,
        id: i64,
        result: Result<u64>,
        done: impl FnOnce(&mut Volume),
        (ended, failed): (&str, &str),
    ) {
        let _guard = self.inner.locks.lock(Key::Volume(id)).await;
        let Ok(current) = self.volume_by_id(id) else { return };
        let mut v = (*current).clone();
        match result {
            Ok(used) => {
                v.transitioning = Transitioning::No;
                v.transitioning_message.clear();
                v.used_bytes = used;
                v.written_ms = crate::units::now_ms();
                done(&mut v);
                tracing::info!(volume = %v.name, "{ended}");
            }
            Err(e) => {
                tracing::error!(volume = %v.name, error = %e, "{failed}");
                v.transitioning = Transitioning::Error;
                v.transitioning_message = e.to_string();
            }
        }
        if let Ok(v) = self.save(v).await {
            self.publish(v);
        }
    }

    /// Persists a changed record on a blocking thread.
    pub(super) async fn save(&self, v: Volume) -> Result<Volume> {
        self.blocking(move |this| {
            this.inner.store.save(&v)?;
            Ok(v)
        })
        .await
    }
}

/// Creates a requested volume's storage from its recorded options.
/// A requested volume has no storage of its own; anything under its key
/// is what a crash during deallocate or a restore left, and goes.
pub(super) fn allocate(this: &Ballast, v: &mut Volume) -> Result<()> {
    let spec = Spec { size: v.size_bytes, ..crate::opts::parse(&v.driver_opts)?.spec() };
    let storage = this.storage(v)?;
    let key = v.storage_key();
    storage
        .destroy(&key)
        .and_then(|()| storage.create(&key, &spec))
        .map_err(|e| Error::internal(format!("allocating volume {:?}", v.name), e))?;
    v.state = State::Inactive;
    v.archived_in = None;
    v.written_ms = crate::units::now_ms();
    Ok(())
}
