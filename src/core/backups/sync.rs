//! A target's repository listed into this host's records: backups taken
//! on another host, or before this state directory existed, are adopted;
//! a listing never forgets one.

use super::engine_error;
use crate::Result;
use crate::backup::{Backup, BackupInfo, BackupState};
use crate::core::Ballast;
use crate::public_id::Kind;

impl Ballast {
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
            None => Kind::Backup
                .parse(&info.meta.backup_id)
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
                let local = Kind::Volume
                    .parse(&info.meta.volume_id)
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
}

/// The first 8 hex digits of a restic id, as restic shows it.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
