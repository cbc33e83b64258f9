//! Backups: take one (from a snapshot, or from the live volume where a
//! snapshot would copy it whole), list them (this host's and,
//! once a target is synced, every host's), verify, remove, and restore in
//! place (`restorefrombackup`). Restoring into a new volume is a fill
//! (`from-backup`, in `core/create.rs`).
//!
//! Every backup runs as a job: the record answers at once in state
//! `creating` with progress in its message, and ends `created` or `error`.
//! A snapshot being read keeps a read lease, so it cannot be removed and
//! its volume cannot be reverted or purged under the backup.
//!
//! This file holds the targets, the published backups and what reads
//! them (lookup, removal, verification); `create.rs`: taking a backup,
//! from its snapshot to its retention; `sync.rs`: a target's repository
//! listed into this host's records; `restore.rs`: restoring a volume in
//! place, and the fill that restoring into a new volume shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backup::{self, Backup, BackupState, Keep, Progress, Repository};
use crate::config::BackupTarget;
use crate::core::Ballast;
use crate::core::actions::NO_TARGET;
use crate::core::locks::Lease;
use crate::public_id::Kind;
use crate::units::{human_size, whole};
use crate::{Error, Result};

mod create;
mod restore;
mod sync;

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
        if let Some(id) = Kind::Backup.parse(reference) {
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

    /// The newest created backup of this host's volume `volume_id` that
    /// holds its data as of `since_ms` or later.
    pub(super) fn backup_since(&self, volume_id: i64, since_ms: i64) -> Option<Arc<Backup>> {
        self.backup_since_in(volume_id, since_ms, None)
    }

    /// [`Ballast::backup_since`] in the target `target` only, if named.
    pub(super) fn backup_since_in(
        &self,
        volume_id: i64,
        since_ms: i64,
        target: Option<&str>,
    ) -> Option<Arc<Backup>> {
        self.backups_read()
            .values()
            .filter(|b| b.volume_id == Some(volume_id) && b.created_ms >= since_ms)
            .filter(|b| target.is_none_or(|t| b.target == t))
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

    /// Why backup `b` cannot be removed now, if it cannot: it is being
    /// taken, a volume is being restored from it, or it holds the data
    /// of a deallocated volume.
    pub fn backup_removal(&self, b: &Backup, holds: &crate::core::Holds) -> Option<Error> {
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
        drop(all);
        self.inner.published.wake();
        b
    }

    async fn save_backup(&self, b: Backup) -> Result<Backup> {
        self.blocking(move |this| {
            this.inner.store.save_backup(&b)?;
            Ok(b)
        })
        .await
    }
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

#[cfg(test)]
mod tests;
