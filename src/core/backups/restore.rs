//! Restoring from a backup: in place (`restorefrombackup`), built beside
//! the volume and swapped in like a revert, and the fill of an empty
//! directory that restoring into a new volume shares (`core/create.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{progress_text, throttled};
use crate::backup::{Backup, BackupState, Repository};
use crate::core::Ballast;
use crate::core::actions::Action;
use crate::core::locks::{Key, Lease};
use crate::volume::{State, Transitioning, Volume};
use crate::{Error, Result};

impl Ballast {
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

    /// Fills the empty directory `dest` from backup `b`, reporting
    /// progress on volume `v` (a fill or an in-place restore).
    pub(in crate::core) fn restore_into(
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
        crate::core::actions::allocate(this, &mut allocated)?;
        let dest = storage.activate(&key).map_err(failed)?;
        let filled = this.restore_into(repo.as_ref(), b, v, &dest);
        storage.deactivate(&key).map_err(failed)?;
        // A cluster volume's storage is this host's to keep or destroy
        // only while it still holds the volume.
        if let Err(e) = this.still_holds(v.id) {
            return Err(failed(e));
        }
        if let Err(e) = filled {
            // Nothing half-restored stays: back to no storage.
            let _ = storage.destroy(&key);
            return Err(failed(e));
        }
    } else {
        let work = v.restore_staging_key();
        storage
            .build_snapshot(&work, &key, &mut |dest| this.restore_into(repo.as_ref(), b, v, dest))
            .map_err(failed)?;
        let swapped = storage.revert(&key, &work, &mut |_| {}, &|| this.still_holds(v.id));
        if let Err(e) = storage.delete_snapshot(&work) {
            tracing::warn!(volume = %v.name, error = %e, "cannot delete the staged restore");
        }
        swapped.map_err(failed)?;
    }
    Ok(storage.usage(&key).unwrap_or(0))
}
