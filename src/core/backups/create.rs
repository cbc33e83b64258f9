//! Taking a backup: the record answers at once in state `creating`; a
//! job reads the named snapshot, the live volume, or a snapshot taken for
//! it and removed after, then records the end and applies the target's
//! retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{engine_error, progress_text, throttled};
use crate::backup::{Backup, BackupInfo, BackupState, Keep, VolumeMeta};
use crate::core::Ballast;
use crate::core::actions::Action;
use crate::core::locks::{Key, Lease};
use crate::pool::BackendKind;
use crate::public_id::Kind;
use crate::snapshot::{SnapState, Snapshot};
use crate::units::now_ms;
use crate::volume::Volume;
use crate::{Error, Result};

impl Ballast {
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
            (None, Some(s)) => Kind::Volume.id(s.volume_id),
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
                let name = b.snapshot_name();
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
    pub(in crate::core) async fn apply_retention(&self, target: &str, volume_id: &str, keep: Keep) {
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

    /// Waits for backup `id` to end (a backup always ends); returns it.
    pub(in crate::core) async fn backup_done(&self, id: i64) -> Option<Arc<Backup>> {
        self.wait_for(None, |this| match this.backups_read().get(&id) {
            None => Some(None),
            Some(b) if b.state != BackupState::Creating => Some(Some(b.clone())),
            Some(_) => None,
        })
        .await
        .flatten()
    }

    /// Waits for snapshot `id` to be created (a snapshot always ends).
    pub(in crate::core) async fn snapshot_done(&self, id: i64) -> Result<Arc<Snapshot>> {
        let ended = self.wait_for(None, |this| {
            let Some(s) = this.snaps_read().get(&id).cloned() else {
                return Some(Err(Error::InvalidState(format!(
                    "snapshot {} was removed",
                    Kind::Snapshot.id(id)
                ))));
            };
            match s.state {
                SnapState::Created => Some(Ok(s)),
                SnapState::Creating => None,
                _ => Some(Err(Error::InvalidState(format!(
                    "snapshot {} failed: {}",
                    s.public_id(),
                    s.message
                )))),
            }
        });
        ended.await.unwrap_or_else(|| {
            Err(Error::InvalidState(format!("snapshot {} never ended", Kind::Snapshot.id(id))))
        })
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

    /// Sets a running backup's message (memory only: progress).
    fn backup_message(&self, id: i64, message: String) {
        let mut all = self.inner.backups.write().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = all.get_mut(&id) {
            Arc::make_mut(b).message = message;
        }
    }
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

/// This host's name, as backups record it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
