//! [`Repository`] for [`Restic`]: backup, list, remove, verify and
//! retention (restore has its own file).

use std::path::Path;
use std::sync::PoisonError;
use std::sync::atomic::AtomicBool;

use rustic_core::jiff::Zoned;
use rustic_core::repofile::SnapshotId;
use rustic_core::{
    BackupOptions, KeepOptions, ParentOptions, SnapshotGroupCriterion, SnapshotOptions,
};

use super::fail::{panic_summary, unwind};
use super::meta::{Description, RootMeta};
use super::progress::relayed;
use super::restic::{Restic, TAG, info};
use super::source::{Errors, Watched};
use super::{BackupInfo, Error, Keep, OnProgress, Repository, Result, VolumeMeta};

impl Repository for Restic {
    fn backup(
        &self,
        src: &Path,
        meta: &VolumeMeta,
        parent: Option<&str>,
        progress: OnProgress<'_>,
    ) -> Result<BackupInfo> {
        let doing = format!("backup of volume {}", meta.volume_name);
        let doing = doing.as_str();
        let desc = Description { meta: meta.clone(), root: Some(RootMeta::read(src)?) };
        let err = |e: Box<rustic_core::RusticError>| self.target.error(doing, &e);
        // Held until the snapshot is saved: no prune in between (see prune).
        let _shared = self.prune_gate.read().unwrap_or_else(PoisonError::into_inner);
        relayed(progress, |bars| {
            let repo = self.repo(bars, doing, true)?.to_indexed_ids().map_err(err)?;
            let mut snap_opts = SnapshotOptions::default()
                .host(meta.host.clone())
                .description(desc.to_json())
                .command("ballast".to_string());
            for tag in [
                TAG,
                &format!("volume={}", meta.volume_name),
                &format!("id={}", meta.volume_id),
                &format!("host={}", meta.host_id),
            ] {
                snap_opts = snap_opts.add_tags(tag).map_err(err)?;
            }
            let snap = snap_opts.to_snapshot().map_err(err)?;
            let parents = match parent {
                // Any snapshot may be the parent, whatever its host or paths.
                // Each backup reads a new snapshot, on a dir pool a copy
                // with new inodes and change times: a file is unchanged
                // when its size and modification time are. (rustic_core
                // 0.13 compares inode numbers only when `ignore_inode` is
                // set, so it stays unset here.)
                Some(p) => ParentOptions::default()
                    .parents(vec![p.to_string()])
                    .group_by(SnapshotGroupCriterion::new())
                    .ignore_ctime(true),
                None => ParentOptions::default().force(true),
            };
            // The contents of `src` at the snapshot's root: a restore (ours
            // or restic's) puts the files straight into its target.
            let opts =
                BackupOptions::default().as_path(Path::new("/").to_path_buf()).parent_opts(parents);
            let errors = Errors::default();
            let source = Watched::new(src, bars.clone(), errors.clone()).map_err(err)?;
            let snap = unwind(|| repo.archive(&opts, &source, snap, &[src.to_path_buf()]))
                .map_err(|p| Error::Failed(format!("{doing}: {}", panic_summary(&p))))?
                .map_err(err)?;
            let missed = errors.take();
            if !missed.is_empty() {
                // The snapshot lacks what could not be read: not a backup.
                let _ = repo.delete_snapshots(&[snap.id]);
                return Err(Error::Failed(format!(
                    "{doing} to backup target {}: {} entr{} of the volume could not be read, \
                     so the backup was discarded; first: {}",
                    self.target.name,
                    missed.len(),
                    if missed.len() == 1 { "y" } else { "ies" },
                    super::fail::below(&missed[0], src)
                )));
            }
            info(&snap).ok_or_else(|| {
                Error::Failed(format!("{doing}: the new snapshot lacks its description"))
            })
        })
    }

    fn list(&self) -> Result<Vec<BackupInfo>> {
        let doing = "listing backups";
        let repo = self.repo(&Default::default(), doing, false)?;
        let mut snaps = self.snapshots(&repo, doing)?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(snaps
            .iter()
            .filter_map(|s| {
                let i = info(s);
                if i.is_none() {
                    tracing::debug!(id = %s.id.to_hex().as_str(), "skipping a snapshot whose description is not ballast's");
                }
                i
            })
            .collect())
    }

    fn restore_until(
        &self,
        id: &str,
        dest: &Path,
        progress: OnProgress<'_>,
        stop: &AtomicBool,
    ) -> Result<()> {
        super::restore::restore(self, id, dest, progress, stop)
    }

    fn remove(&self, id: &str) -> Result<()> {
        let doing = format!("removing backup {id}");
        let repo = self.repo(&Default::default(), &doing, false)?;
        let snap = self.find(&repo, id, &doing)?;
        repo.delete_snapshots(&[snap.id]).map_err(|e| self.target.error(&doing, &e))?;
        self.prune(&repo, &doing)
    }

    fn verify(&self, id: &str) -> Result<()> {
        let doing = format!("verifying backup {id}");
        let repo = self.repo(&Default::default(), &doing, false)?;
        let snap = self.find(&repo, id, &doing)?;
        self.check(&repo, &snap, &doing)
    }

    fn apply_retention(&self, host_id: &str, volume_id: &str, keep: Keep) -> Result<Vec<String>> {
        if keep.is_empty() {
            return Ok(Vec::new());
        }
        let doing = format!("retention for volume {volume_id}");
        let doing = doing.as_str();
        let repo = self.repo(&Default::default(), doing, false)?;
        // Only this host's volume: another host's `1v7` is another volume.
        let (tag, host) = (format!("id={volume_id}"), format!("host={host_id}"));
        let snaps: Vec<_> = self
            .snapshots(&repo, doing)?
            .into_iter()
            .filter(|s| s.tags.contains(&tag) && s.tags.contains(&host))
            .collect();
        let count = |n: Option<u32>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let opts = KeepOptions::default()
            .keep_last(count(keep.last))
            .keep_daily(count(keep.daily))
            .keep_weekly(count(keep.weekly));
        let decided = opts.apply(snaps, &Zoned::now()).map_err(|e| self.target.error(doing, &e))?;
        let forget: Vec<SnapshotId> =
            decided.into_iter().filter(|d| !d.keep).map(|d| d.snapshot.id).collect();
        if forget.is_empty() {
            return Ok(Vec::new());
        }
        repo.delete_snapshots(&forget).map_err(|e| self.target.error(doing, &e))?;
        self.prune(&repo, doing)?;
        Ok(forget.iter().map(|id| id.to_hex().as_str().to_string()).collect())
    }
}
