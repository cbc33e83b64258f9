//! Backups: take one (from a snapshot, or from the live volume where a
//! snapshot would copy it whole), list them (this host's and,
//! once a target is synced, every host's), verify, remove, and restore in
//! place (`restorefrombackup`). Restoring into a new volume is a fill
//! (`from-backup`, in `create.rs`).
//!
//! Every backup runs as a job: the record answers at once in state
//! `creating` with progress in its message, and ends `created` or `error`.
//! A snapshot being read keeps a read lease, so it cannot be removed and
//! its volume cannot be reverted or purged under the backup.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Ballast;
use super::actions::Action;
use super::locks::{Key, Lease};
use crate::backup::{
    self, Backup, BackupInfo, BackupState, Keep, Progress, Repository, VolumeMeta,
};
use crate::config::BackupTarget;
use crate::pool::BackendKind;
use crate::snapshot::{SnapState, Snapshot, parse_public_id};
use crate::units::{human_size, whole};
use crate::volume::{State, Transitioning, Volume, now_ms};
use crate::{Error, Result};

/// Why nothing can be backed up or restored, and what to do about it.
pub(super) const NO_TARGET: &str =
    "no backup target is configured: add a [[backup_target]] to the config";

/// A configured target and its repository, opened on first use.
pub(super) struct Target {
    pub(super) config: BackupTarget,
    repo: Mutex<Option<Arc<dyn Repository>>>,
}

impl Target {
    pub(super) fn new(config: BackupTarget) -> Self {
        Target { config, repo: Mutex::new(None) }
    }

    fn keep(&self) -> Keep {
        Keep {
            last: self.config.keep_last,
            daily: self.config.keep_daily,
            weekly: self.config.keep_weekly,
        }
    }
}

/// The domain error for a backup engine's error: its message already
/// names the target, the backup and the object.
fn engine_error(e: backup::Error) -> Error {
    match e {
        backup::Error::NotFound(m) => Error::NotFound(m),
        backup::Error::Unavailable(m) | backup::Error::Refused(m) => Error::InvalidState(m),
        backup::Error::Corrupt(m) | backup::Error::Failed(m) => Error::Internal(m),
    }
}

impl Ballast {
    /// The configured targets, in config order.
    pub fn backup_targets(&self) -> Vec<BackupTarget> {
        self.inner.targets.values().map(|t| t.config.clone()).collect()
    }

    /// Whether any target is configured: without one nothing can be
    /// backed up or restored, and the actions that would are not offered.
    pub fn has_backup_target(&self) -> bool {
        !self.inner.targets.is_empty()
    }

    /// Whether the target `name` is configured (a backup listed from the
    /// store may name one that was removed from the config since).
    pub fn has_target(&self, name: &str) -> bool {
        self.inner.targets.contains_key(name)
    }

    /// Refuses, naming the fix, when no target is configured.
    pub fn require_backup_target(&self) -> Result<()> {
        if self.has_backup_target() {
            return Ok(());
        }
        Err(Error::InvalidState(NO_TARGET.into()))
    }

    /// The target `name`, or the only one when none is named.
    pub(super) fn target(&self, name: Option<&str>) -> Result<&Target> {
        let targets = &self.inner.targets;
        let names = || targets.keys().cloned().collect::<Vec<_>>().join(", ");
        match name {
            Some(n) => targets.get(n).ok_or_else(|| {
                Error::InvalidInput(if targets.is_empty() {
                    format!("no backup target named {n:?}: none is configured ([[backup_target]])")
                } else {
                    format!("no backup target named {n:?}; targets: {}", names())
                })
            }),
            None if targets.len() == 1 => Ok(targets.values().next().expect("one target")),
            None if targets.is_empty() => Err(Error::InvalidState(NO_TARGET.into())),
            None => Err(Error::InvalidInput(format!(
                "several backup targets are configured; name one: {}",
                names()
            ))),
        }
    }

    /// The target's repository, opened (and created) on first use; a
    /// failed open is tried again next time.
    pub(super) async fn repo(&self, target: &str) -> Result<Arc<dyn Repository>> {
        let name = target.to_string();
        self.blocking(move |this| {
            let t = this.target(Some(&name))?;
            let mut repo = t.repo.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = &*repo {
                return Ok(r.clone());
            }
            let opened = backup::open(&t.config, &this.inner.state_dir).map_err(engine_error)?;
            *repo = Some(opened.clone());
            Ok(opened)
        })
        .await
    }

    /// Backups not removed, optionally of one local volume, oldest first.
    pub fn backups(&self, volume_id: Option<i64>) -> Vec<Arc<Backup>> {
        self.backups_read()
            .values()
            .filter(|b| volume_id.is_none_or(|v| b.volume_id == Some(v)))
            .cloned()
            .collect()
    }

    /// A backup by id (`1b7`), by restic snapshot id (8 hex digits or
    /// more, as `restic snapshots` shows it), or by the name listings show
    /// (`db-1b7`, or `db-3f2a91bc` for one made on another host).
    pub fn find_backup(&self, reference: &str) -> Result<Arc<Backup>> {
        let all = self.backups_read();
        if let Some(id) = parse_public_id("1b", reference) {
            return all
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("no backup with id {reference:?}")));
        }
        let hex = reference.len() >= 8 && reference.bytes().all(|b| b.is_ascii_hexdigit());
        let mut found: Vec<_> = all
            .values()
            .filter(|b| hex && b.restic_id.as_deref().is_some_and(|r| r.starts_with(reference)))
            .collect();
        if found.is_empty() {
            found = all.values().filter(|b| b.name == reference).collect();
        }
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!(
                "no backup with id or name {reference:?}; backups made on another host appear \
                 once their target is listed (ballast backup ls --target NAME)"
            ))),
            many => Err(Error::InvalidInput(format!(
                "{} backups match {reference:?}; use an id: {}",
                many.len(),
                many.iter().map(|b| b.public_id()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Backs up a volume, from `snapshot` when one is named (it must be
    /// the volume's and created), else from the live volume where a
    /// snapshot would copy it whole, else from a snapshot taken for it and
    /// removed after. Returns the backup in state `creating`.
    pub async fn create_backup(
        &self,
        volume: Option<&str>,
        snapshot: Option<&str>,
        target: Option<&str>,
    ) -> Result<Arc<Backup>> {
        let target = self.target(target)?.config.name.clone();
        // A snapshot named along with its volume is that volume's: names
        // are only unique per volume.
        let snap = match (volume, snapshot) {
            (Some(v), Some(s)) => Some(self.find_snapshot_of(self.find(v)?.id, s)?),
            (None, Some(s)) => Some(self.find_snapshot(s)?),
            (_, None) => None,
        };
        let reference = match (volume, &snap) {
            (Some(v), _) => v.to_string(),
            (None, Some(s)) => format!("1v{}", s.volume_id),
            (None, None) => {
                return Err(Error::InvalidInput("name the volume or snapshot to back up".into()));
            }
        };
        let (guard, v) = self.lock_ref(&reference).await?;
        match &snap {
            Some(s) if s.volume_id != v.id => {
                return Err(Error::InvalidInput(format!(
                    "snapshot {} belongs to another volume, not to {:?}",
                    s.public_id(),
                    v.name
                )));
            }
            Some(s) if s.state != SnapState::Created => {
                return Err(Error::InvalidState(format!(
                    "snapshot {} is {}, not created",
                    s.public_id(),
                    s.state.as_str()
                )));
            }
            Some(_) => {}
            None => self.check(Action::Snapshot, &v)?,
        }
        // From the live volume: held for the job in a cluster.
        let hold = match &snap {
            Some(_) => None,
            None => self.hold_for_job(&v).await?,
        };
        let pool_kind = self.pool(&v.pool).map(|p| p.config.backend.as_str()).unwrap_or("dir");
        let meta = VolumeMeta {
            volume_name: v.name.clone(),
            volume_id: v.public_id(),
            snapshot_id: snap.as_ref().map(|s| s.public_id()).unwrap_or_default(),
            backend: pool_kind.to_string(),
            size_bytes: v.size_bytes,
            driver_opts: v.driver_opts.clone(),
            host: hostname(),
            host_id: self.inner.host_id.clone(),
            backup_id: String::new(),
        };
        let mut b = Backup {
            id: 0,
            target,
            restic_id: None,
            name: String::new(),
            volume_id: Some(v.id),
            snapshot_id: snap.as_ref().map(|s| s.id),
            meta,
            state: BackupState::Creating,
            message: "starting".into(),
            created_ms: now_ms(),
            size_bytes: 0,
            stored_bytes: 0,
        };
        let volume_name = v.name.clone();
        let b = self
            .blocking(move |this| {
                b.id = this.inner.store.insert_backup(&b)?;
                b.name = format!("{volume_name}-{}", b.public_id());
                b.meta.backup_id = b.public_id();
                this.inner.store.save_backup(&b)?;
                Ok(b)
            })
            .await?;
        let created = self.publish_backup(b.clone());
        drop(guard);
        let this = self.clone();
        tokio::spawn(async move {
            let _hold = hold;
            let started = Instant::now();
            let result = this.run_backup(&b, v, snap).await;
            this.finish_backup(b.id, result, started.elapsed()).await;
        });
        Ok(created)
    }

    /// Takes the backup; returns it and when its snapshot was taken (the
    /// moment whose data it holds).
    async fn run_backup(
        &self,
        b: &Backup,
        v: Arc<Volume>,
        snap: Option<Arc<Snapshot>>,
    ) -> Result<(BackupInfo, i64)> {
        let id = b.id;
        if snap.is_none() && self.reads_live(&v)? {
            let started = now_ms();
            return self.read_live_into_backup(b, &v).await.map(|info| (info, started));
        }
        let (snap, temporary) = match snap {
            Some(s) => (s, false),
            None => {
                self.backup_message(id, "taking a snapshot".into());
                let name = format!("backup-{}", b.public_id());
                let s = self.snapshot(&v.public_id(), Some(name)).await?;
                (self.snapshot_done(s.id).await?, true)
            }
        };
        let result = self.read_into_backup(b, &v, &snap).await.map(|info| (info, snap.created_ms));
        if temporary && let Err(e) = self.remove_snapshot(&snap.public_id()).await {
            tracing::warn!(snapshot = %snap.public_id(), error = %e, "cannot remove the snapshot a backup was read from");
        }
        result
    }

    /// Whether a backup of `v` reads the live volume rather than a new
    /// snapshot: where a snapshot would copy every byte of it (a dir pool
    /// or host path on a filesystem without reflinks). Loop volumes are
    /// always snapshotted: reading one in place would need its filesystem
    /// mounted, which is Docker's to decide.
    fn reads_live(&self, v: &Volume) -> Result<bool> {
        let storage = self.storage(v)?;
        Ok(!storage.copies_share_data() && storage.kind() != BackendKind::Loop)
    }

    /// Backs up the volume as it is now, under a read lease on it (no
    /// revert, restore or removal meanwhile); see
    /// [`Repository::backup_live`] for what the backup holds.
    async fn read_live_into_backup(&self, b: &Backup, v: &Arc<Volume>) -> Result<BackupInfo> {
        let lease = {
            let _guard = self.inner.locks.lock(Key::Volume(v.id)).await;
            let now = self.volume_by_id(v.id)?;
            self.check(Action::Snapshot, &now)?;
            self.inner.locks.lease(Lease::Volume(v.id))
        };
        let repo = self.repo(&b.target).await?;
        let parent =
            self.newest_backup(&b.target, &b.meta.volume_id).and_then(|p| p.restic_id.clone());
        let (v, meta, id) = (v.clone(), b.meta.clone(), b.id);
        let result = self
            .blocking(move |this| {
                let storage = this.storage(&v)?;
                let key = v.storage_key();
                let dir = storage
                    .open_volume(&key)
                    .map_err(|e| Error::internal(format!("reading volume {:?}", v.name), e))?;
                let path = storage.mountpoint(&key);
                let report = throttled(move |p, rate| {
                    this.backup_message(id, format!("backing up: {}", progress_text(p, rate)));
                });
                repo.backup_live(dir, &path, &meta, parent.as_deref(), &report)
                    .map_err(engine_error)
            })
            .await;
        drop(lease);
        result
    }

    /// Backs up snapshot `snap` of `v` under a read lease on it.
    async fn read_into_backup(
        &self,
        b: &Backup,
        v: &Arc<Volume>,
        snap: &Arc<Snapshot>,
    ) -> Result<BackupInfo> {
        let lease = {
            let _guard = self.inner.locks.lock(Key::Volume(v.id)).await;
            match self.snaps_read().get(&snap.id) {
                Some(s) if s.state == SnapState::Created => {}
                _ => {
                    return Err(Error::InvalidState(format!(
                        "snapshot {} was removed before it could be read",
                        snap.public_id()
                    )));
                }
            }
            self.inner.locks.lease(Lease::Snapshot(snap.id))
        };
        let repo = self.repo(&b.target).await?;
        let parent =
            self.newest_backup(&b.target, &b.meta.volume_id).and_then(|p| p.restic_id.clone());
        let mut meta = b.meta.clone();
        meta.snapshot_id = snap.public_id();
        let (v, snap, id) = (v.clone(), snap.clone(), b.id);
        let result = self
            .blocking(move |this| {
                let view = this.storage(&v)?.read_snapshot(&snap.storage_key()).map_err(|e| {
                    Error::internal(format!("reading snapshot {}", snap.public_id()), e)
                })?;
                let report = throttled(move |p, rate| {
                    this.backup_message(id, format!("backing up: {}", progress_text(p, rate)));
                });
                repo.backup(view.path(), &meta, parent.as_deref(), &report).map_err(engine_error)
            })
            .await;
        drop(lease);
        result
    }

    async fn finish_backup(&self, id: i64, result: Result<(BackupInfo, i64)>, took: Duration) {
        let Some(current) = self.backups_read().get(&id).cloned() else { return };
        let mut b = (*current).clone();
        match result {
            Ok((info, taken_ms)) => {
                tracing::info!(backup = %b.public_id(), ?took, bytes = info.size_bytes, stored = info.stored_bytes, "backup created");
                b.state = BackupState::Created;
                b.message = torn_message(&info.changed);
                b.restic_id = Some(info.id);
                b.created_ms = taken_ms;
                b.size_bytes = info.size_bytes;
                b.stored_bytes = info.stored_bytes;
                b.meta = info.meta;
            }
            Err(e) => {
                tracing::error!(backup = %b.public_id(), error = %e, "backup failed");
                b.state = BackupState::Error;
                b.message = e.to_string();
            }
        }
        let created = b.state == BackupState::Created;
        let (target, volume) = (b.target.clone(), b.meta.volume_id.clone());
        if let Ok(b) = self.save_backup(b).await {
            self.publish_backup(b);
        }
        let keep = self.target(Some(&target)).map(|t| t.keep()).unwrap_or_default();
        if created && !keep.is_empty() {
            self.apply_retention(&target, &volume, keep).await;
        }
    }

    /// Forgets the backups of a volume (public id) in `target` that `keep`
    /// does not keep.
    pub(super) async fn apply_retention(&self, target: &str, volume_id: &str, keep: Keep) {
        let Ok(repo) = self.repo(target).await else { return };
        let (volume, host) = (volume_id.to_string(), self.inner.host_id.clone());
        let forgotten = self
            .blocking(move |_| repo.apply_retention(&host, &volume, keep).map_err(engine_error))
            .await;
        match forgotten {
            Ok(ids) => self.mark_removed(target, &ids).await,
            Err(e) => tracing::warn!(target, volume = volume_id, error = %e, "retention failed"),
        }
    }

    /// Waits for backup `id` to end (a backup always ends); returns it.
    pub(super) async fn backup_done(&self, id: i64) -> Option<Arc<Backup>> {
        loop {
            let b = self.backups_read().get(&id).cloned()?;
            if b.state != BackupState::Creating {
                return Some(b);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for snapshot `id` to be created (a snapshot always ends).
    pub(super) async fn snapshot_done(&self, id: i64) -> Result<Arc<Snapshot>> {
        loop {
            let Some(s) = self.snaps_read().get(&id).cloned() else {
                return Err(Error::InvalidState(format!("snapshot 1s{id} was removed")));
            };
            match s.state {
                SnapState::Created => return Ok(s),
                SnapState::Creating => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => {
                    return Err(Error::InvalidState(format!(
                        "snapshot {} failed: {}",
                        s.public_id(),
                        s.message
                    )));
                }
            }
        }
    }

    /// The newest created backup of this host's volume `volume_id` that
    /// holds its data as of `since_ms` or later.
    pub(super) fn backup_since(&self, volume_id: i64, since_ms: i64) -> Option<Arc<Backup>> {
        self.backups_read()
            .values()
            .filter(|b| b.volume_id == Some(volume_id) && b.created_ms >= since_ms)
            .filter(|b| b.state == BackupState::Created && b.restic_id.is_some())
            .max_by_key(|b| b.created_ms)
            .cloned()
    }

    /// Each volume's newest backup that holds data (row id → when its
    /// snapshot was taken): [`Ballast::backup_since`] for every volume at
    /// once.
    pub(super) fn newest_backups(&self) -> HashMap<i64, i64> {
        let mut newest = HashMap::new();
        for b in self.backups_read().values() {
            let Some(v) = b.volume_id.filter(|_| b.state == BackupState::Created) else { continue };
            if b.restic_id.is_some() {
                let t = newest.entry(v).or_insert(b.created_ms);
                *t = (*t).max(b.created_ms);
            }
        }
        newest
    }

    /// The newest created backup of volume `volume_id` (public id) in
    /// `target`: the parent of the next one.
    fn newest_backup(&self, target: &str, volume_id: &str) -> Option<Arc<Backup>> {
        let host = &self.inner.host_id;
        self.backups_read()
            .values()
            .filter(|b| b.target == target && b.meta.volume_id == volume_id)
            .filter(|b| b.meta.host_id == *host)
            .filter(|b| b.state == BackupState::Created && b.restic_id.is_some())
            .max_by_key(|b| b.created_ms)
            .cloned()
    }

    /// Reads a target's repository and records the backups it holds that
    /// this host does not know (taken on another host, or before this
    /// state directory existed). A listing never forgets anything: a store
    /// that answers with less than it holds (not mounted, another
    /// repository) must not make backups disappear here; a backup this
    /// host had removed but that is listed again comes back.
    pub async fn sync_backups(&self, target: &str) -> Result<usize> {
        let target = self.target(Some(target))?.config.name.clone();
        let repo = self.repo(&target).await?;
        let listed = self.blocking(move |_| repo.list().map_err(engine_error)).await?;
        let name = target.clone();
        let changed = self
            .blocking(move |this| {
                let mut changed = Vec::new();
                for info in listed {
                    if let Some(b) = this.adopt(&name, &info)? {
                        changed.push(b);
                    }
                }
                Ok(changed)
            })
            .await?;
        let count = changed.len();
        for b in changed {
            self.publish_backup(b);
        }
        Ok(count)
    }

    /// What a listed backup changes in the store: nothing when known; a
    /// row of this host's own (a backup cut short after restic saved it,
    /// or one removed here) brought up to date; else a new row.
    fn adopt(&self, target: &str, info: &BackupInfo) -> Result<Option<Backup>> {
        let store = &self.inner.store;
        let ours = info.meta.host_id == self.inner.host_id;
        let known = match store.backup_by_restic_id(target, &info.id)? {
            Some(b) => Some(b),
            None => parse_public_id("1b", &info.meta.backup_id)
                .filter(|_| ours)
                .and_then(|id| self.backups_read().get(&id).map(|b| (**b).clone()))
                .filter(|b| b.target == target && b.restic_id.is_none()),
        };
        let b = match known {
            // Still running: its own end records it.
            Some(b) if b.state == BackupState::Creating => return Ok(None),
            Some(b) if b.state == BackupState::Created && b.restic_id.is_some() => return Ok(None),
            Some(b) => Backup {
                state: BackupState::Created,
                message: String::new(),
                restic_id: Some(info.id.clone()),
                ..b
            },
            None => {
                // This host's own volume, if it still is the same one.
                let local = parse_public_id("1v", &info.meta.volume_id)
                    .filter(|_| ours)
                    .and_then(|id| store.get(id).ok().flatten())
                    .filter(|v| v.name == info.meta.volume_name)
                    .map(|v| v.id);
                let mut b = Backup {
                    id: 0,
                    target: target.to_string(),
                    name: format!("{}-{}", info.meta.volume_name, short(&info.id)),
                    restic_id: Some(info.id.clone()),
                    volume_id: local,
                    snapshot_id: None,
                    meta: info.meta.clone(),
                    state: BackupState::Created,
                    message: String::new(),
                    created_ms: info.time_ms,
                    size_bytes: info.size_bytes,
                    stored_bytes: info.stored_bytes,
                };
                b.id = store.insert_backup(&b)?;
                return Ok(Some(b));
            }
        };
        store.save_backup(&b)?;
        Ok(Some(b))
    }

    /// Syncs every target; one that fails is logged and skipped.
    pub async fn sync_all_backups(&self) {
        for name in self.inner.targets.keys() {
            if let Err(e) = self.sync_backups(name).await {
                tracing::warn!(target = %name, error = %e, "cannot list the backup target");
            }
        }
    }

    /// Records that restic snapshots `ids` of `target` are forgotten.
    async fn mark_removed(&self, target: &str, ids: &[String]) {
        let doomed: Vec<Backup> = self
            .backups_read()
            .values()
            .filter(|b| b.target == target)
            .filter(|b| b.restic_id.as_ref().is_some_and(|r| ids.contains(r)))
            .map(|b| Backup { state: BackupState::Removed, ..(**b).clone() })
            .collect();
        for b in doomed {
            if let Ok(b) = self.save_backup(b).await {
                self.publish_backup(b);
            }
        }
    }

    /// Why backup `b` cannot be removed now, if it cannot: it is being
    /// taken, a volume is being restored from it, or it holds the data
    /// of a deallocated volume.
    pub fn backup_removal(&self, b: &Backup, holds: &super::Holds) -> Option<Error> {
        if b.state == BackupState::Creating {
            return Some(Error::InvalidState(format!(
                "backup {} is still being created",
                b.public_id()
            )));
        }
        if self.inner.locks.leased(Lease::Backup(b.id)) {
            return Some(Error::InvalidState(format!(
                "backup {} is busy: a volume is being restored from it",
                b.public_id()
            )));
        }
        if !holds.archives.contains(&b.id) {
            return None;
        }
        let v = self.list().into_iter().find(|v| v.archived_in == Some(b.id))?;
        Some(Error::InvalidState(format!(
            "backup {} holds the data of deallocated volume {:?}; restore the volume first \
             (docker run or ballast volume activate {})",
            b.public_id(),
            v.name,
            v.name
        )))
    }

    /// Forgets a backup and prunes the data nothing else uses.
    pub async fn remove_backup(&self, reference: &str) -> Result<Arc<Backup>> {
        let b = self.find_backup(reference)?;
        if let Some(e) = self.backup_removal(&b, &self.holds()) {
            return Err(e);
        }
        if let Some(restic_id) = b.restic_id.clone() {
            let repo = self.repo(&b.target).await?;
            self.blocking(move |_| repo.remove(&restic_id).map_err(engine_error)).await?;
        }
        let removed = Backup { state: BackupState::Removed, ..(*b).clone() };
        let removed = self.save_backup(removed).await?;
        Ok(self.publish_backup(removed))
    }

    /// Reads back everything a backup needs and checks it.
    pub async fn verify_backup(&self, reference: &str) -> Result<Arc<Backup>> {
        let b = self.find_backup(reference)?;
        let Some(restic_id) = b.restic_id.clone().filter(|_| b.state == BackupState::Created)
        else {
            return Err(Error::InvalidState(format!(
                "backup {} is {}: there is nothing to verify",
                b.public_id(),
                b.state.as_str()
            )));
        };
        let repo = self.repo(&b.target).await?;
        self.blocking(move |_| repo.verify(&restic_id).map_err(engine_error)).await?;
        Ok(b)
    }

    /// `restorefrombackup`: the volume's content becomes the backup's. The
    /// restore is built beside the volume and swapped in like a revert, so
    /// a failed or interrupted restore leaves the volume as it was.
    pub async fn restore_from_backup(&self, reference: &str, backup: &str) -> Result<Arc<Volume>> {
        let (guard, current) = self.lock_ref(reference).await?;
        let mut v = (*current).clone();
        self.check(Action::RestoreFromBackup, &v)?;
        let hold = self.hold_for_job(&v).await?;
        let b = self.restorable(backup)?;
        let lease = self.inner.locks.lease(Lease::Backup(b.id));
        let label = format!("restoring from backup {} ({})", b.public_id(), b.name);
        v.transitioning = Transitioning::Yes;
        v.transitioning_message = format!("{label}: starting");
        let v = self.save(v).await?;
        let started = self.publish(v.clone());
        // As a revert: the mark is on disk, so the lock can go.
        drop(guard);
        let (this, vid) = (self.clone(), v.id);
        tokio::spawn(async move {
            let _hold = hold;
            let t = Instant::now();
            let result = match this.repo(&b.target).await {
                Ok(repo) => this.blocking(move |this| restore_in_place(this, &v, &b, repo)).await,
                Err(e) => Err(e),
            };
            drop(lease);
            match result {
                Ok(used) => {
                    let done = |v: &mut Volume| {
                        v.state = State::Inactive;
                        v.archived_in = None;
                    };
                    let ended = format!("volume restored from a backup in {:?}", t.elapsed());
                    this.end_job(vid, Ok(used), done, (&ended, "restore from a backup failed"))
                        .await;
                }
                Err(e) => this.end_failed_restore(vid, &label, e).await,
            }
        });
        Ok(started)
    }

    /// Ends an in-place restore that failed. The restore was built beside
    /// the volume (or, for a `requested` volume, its new storage was
    /// destroyed again), so the volume is as it was and stays usable:
    /// `transitioning: no`, the failure in its message.
    async fn end_failed_restore(&self, id: i64, label: &str, e: Error) {
        let _guard = self.inner.locks.lock(Key::Volume(id)).await;
        let Ok(current) = self.volume_by_id(id) else { return };
        let mut v = (*current).clone();
        tracing::error!(volume = %v.name, error = %e, "restore from a backup failed; the volume is unchanged");
        v.transitioning = Transitioning::No;
        v.transitioning_message = format!("{label} failed; the data is unchanged: {e}");
        if let Ok(v) = self.save(v).await {
            self.publish(v);
        }
    }

    /// A backup that can be restored: created and written.
    pub fn restorable(&self, reference: &str) -> Result<Arc<Backup>> {
        let b = self.find_backup(reference)?;
        if b.state != BackupState::Created || b.restic_id.is_none() {
            return Err(Error::InvalidState(format!(
                "backup {} is {}, not created",
                b.public_id(),
                b.state.as_str()
            )));
        }
        Ok(b)
    }

    /// Sets a running backup's message (memory only: progress).
    fn backup_message(&self, id: i64, message: String) {
        let mut all = self.inner.backups.write().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = all.get_mut(&id) {
            Arc::make_mut(b).message = message;
        }
    }

    fn backups_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<i64, Arc<Backup>>> {
        self.inner.backups.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `b` what readers see (removed backups disappear).
    fn publish_backup(&self, b: Backup) -> Arc<Backup> {
        let b = Arc::new(b);
        let mut all = self.inner.backups.write().unwrap_or_else(|p| p.into_inner());
        if b.state == BackupState::Removed {
            all.remove(&b.id);
        } else {
            all.insert(b.id, b.clone());
        }
        b
    }

    async fn save_backup(&self, b: Backup) -> Result<Backup> {
        self.blocking(move |this| {
            this.inner.store.save_backup(&b)?;
            Ok(b)
        })
        .await
    }

    /// Fills the empty directory `dest` from backup `b`, reporting
    /// progress on volume `v` (a fill or an in-place restore).
    pub(super) fn restore_into(
        &self,
        repo: &dyn Repository,
        b: &Backup,
        v: &Volume,
        dest: &Path,
    ) -> std::io::Result<()> {
        let restic_id = b.restic_id.as_deref().unwrap_or_default();
        let label = format!("restoring from backup {} ({})", b.public_id(), b.name);
        let (this, id, name) = (self.clone(), v.id, v.name.clone());
        let report = throttled(move |p, rate| {
            this.volume_message(id, &name, format!("{label}: {}", progress_text(p, rate)));
        });
        // Removing the volume cancels the restore (see `remove.rs`).
        let restoring = self.inner.locks.restoring(v.id);
        repo.restore_until(restic_id, dest, &report, &restoring.stop)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// The in-place restore's storage work: the backup is restored into a
/// new snapshot shaped like the volume (or, for a `requested` volume, its
/// storage is made first), which then replaces the volume's content.
fn restore_in_place(
    this: &Ballast,
    v: &Volume,
    b: &Backup,
    repo: Arc<dyn Repository>,
) -> Result<u64> {
    let key = v.storage_key();
    let storage = this.storage(v)?;
    let failed = |e| Error::internal(format!("restoring volume {:?}", v.name), e);
    if v.state == State::Requested {
        let mut allocated = v.clone();
        storage.destroy(&key).map_err(failed)?;
        super::actions::allocate(this, &mut allocated)?;
        let dest = storage.activate(&key).map_err(failed)?;
        let filled = this.restore_into(repo.as_ref(), b, v, &dest);
        storage.deactivate(&key).map_err(failed)?;
        if let Err(e) = filled {
            // Nothing half-restored stays: back to no storage.
            let _ = storage.destroy(&key);
            return Err(failed(e));
        }
    } else {
        let work = format!("restore-{key}");
        storage
            .build_snapshot(&work, &key, &mut |dest| this.restore_into(repo.as_ref(), b, v, dest))
            .map_err(failed)?;
        let swapped = storage.revert(&key, &work, &mut |_| {});
        if let Err(e) = storage.delete_snapshot(&work) {
            tracing::warn!(volume = %v.name, error = %e, "cannot delete the staged restore");
        }
        swapped.map_err(failed)?;
    }
    Ok(storage.usage(&key).unwrap_or(0))
}

/// Calls `report` with the progress and the byte rate at most four times
/// a second.
fn throttled(report: impl Fn(Progress, f64) + Send + Sync) -> impl Fn(Progress) + Sync {
    let started = Instant::now();
    let last = Mutex::new(None::<Instant>);
    move |p: Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(250)) {
            return;
        }
        *last = Some(Instant::now());
        let secs = started.elapsed().as_secs_f64().max(0.001);
        report(p, p.bytes_done as f64 / secs);
    }
}

/// "40% (400 MiB of 1.0 GiB), 1200 files, 80 MiB/s, about 8 s left".
fn progress_text(p: Progress, rate: f64) -> String {
    let done = human_size(p.bytes_done);
    let rate_text = format!("{}/s", human_size(whole(rate)));
    if p.bytes_total == 0 || p.bytes_done > p.bytes_total {
        return format!("{done}, {} files, {rate_text}", p.files_done);
    }
    let pct = (p.bytes_done.saturating_mul(100) / p.bytes_total).min(99);
    let left = if rate >= 1.0 {
        format!(", about {} s left", whole(((p.bytes_total - p.bytes_done) as f64 / rate).ceil()))
    } else {
        String::new()
    };
    format!(
        "{pct}% ({done} of {}), {} files, {rate_text}{left}",
        human_size(p.bytes_total),
        p.files_done
    )
}

/// What a created backup says about the files that changed every time
/// they were read (empty when none did).
fn torn_message(changed: &[String]) -> String {
    let Some(first) = changed.first() else { return String::new() };
    let more = match changed.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    format!(
        "{} file{} changed while being read and may be torn: {first}{more}; for a consistent \
         copy, stop the writer or back up a snapshot (--snapshot)",
        changed.len(),
        if changed.len() == 1 { "" } else { "s" }
    )
}

/// The first 8 hex digits of a restic id, as restic shows it.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// This host's name, as backups record it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
