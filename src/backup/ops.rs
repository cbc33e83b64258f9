//! [`Repository`] for [`Restic`]: backup (of a snapshot, or of the live
//! volume in passes), list, remove, verify and retention (restore has its
//! own file).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError};

use rustic_core::jiff::Zoned;
use rustic_core::repofile::{SnapshotFile, SnapshotId};
use rustic_core::{
    BackupOptions, IndexedIdsStatus, KeepOptions, ParentOptions, ReadSource, Repository as Rustic,
    SnapshotGroupCriterion, SnapshotOptions,
};

use super::fail::{panic_summary, unwind};
use super::live::{Changed, Live, RACY};
use super::meta::{Description, RootMeta};
use super::progress::{Bars, relayed};
use super::restic::{Restic, TAG, info};
use super::source::{Errors, Watched};
use super::{BackupInfo, Error, Keep, OnProgress, Repository, Result, VolumeMeta};

/// One backup being taken: the repository, opened and indexed, and what
/// every snapshot of it records.
struct Run<'a> {
    restic: &'a Restic,
    repo: Rustic<IndexedIdsStatus>,
    doing: &'a str,
    meta: &'a VolumeMeta,
    desc: Description,
}

impl<'a> Run<'a> {
    /// The same run on the repository opened and indexed again: the index
    /// held in memory knows nothing of what this run has saved since.
    fn reindexed(&self, bars: &Bars) -> Result<Run<'a>> {
        let repo = self
            .restic
            .repo(bars, self.doing, false)?
            .to_indexed_ids()
            .map_err(|e| self.err(&e))?;
        Ok(Run {
            restic: self.restic,
            repo,
            doing: self.doing,
            meta: self.meta,
            desc: self.desc.clone(),
        })
    }

    fn err(&self, e: &rustic_core::RusticError) -> Error {
        self.restic.target.error(self.doing, e)
    }

    /// Archives `source` (the tree at `src`) into a new snapshot whose
    /// files are compared with those of `parent` (a file whose size,
    /// modification time and, unless `ignore_ctime`, change time match
    /// is not read again). An entry that could not be read fails it.
    fn archive<R>(
        &self,
        source: &R,
        errors: &Errors,
        src: &Path,
        parent: Option<&str>,
        ignore_ctime: bool,
    ) -> Result<SnapshotFile>
    where
        R: ReadSource + 'static,
        R::Open: Send,
        R::Iter: Send,
    {
        let err = |e: Box<rustic_core::RusticError>| self.err(&e);
        let mut snap_opts = SnapshotOptions::default()
            .host(self.meta.host.clone())
            .description(self.desc.to_json())
            .command("ballast".to_string());
        for tag in [
            TAG,
            &format!("volume={}", self.meta.volume_name),
            &format!("id={}", self.meta.volume_id),
            &format!("host={}", self.meta.host_id),
        ] {
            snap_opts = snap_opts.add_tags(tag).map_err(err)?;
        }
        let snap = snap_opts.to_snapshot().map_err(err)?;
        let parents = match parent {
            // Any snapshot may be the parent, whatever its host or paths.
            // (rustic_core 0.13 compares inode numbers only when
            // `ignore_inode` is set, so it stays unset here.)
            Some(p) => ParentOptions::default()
                .parents(vec![p.to_string()])
                .group_by(SnapshotGroupCriterion::new())
                .ignore_ctime(ignore_ctime),
            None => ParentOptions::default().force(true),
        };
        // The contents of `src` at the snapshot's root: a restore (ours
        // or restic's) puts the files straight into its target.
        let opts =
            BackupOptions::default().as_path(Path::new("/").to_path_buf()).parent_opts(parents);
        let doing = self.doing;
        let snap = unwind(|| self.repo.archive(&opts, source, snap, &[src.to_path_buf()]))
            .map_err(|p| Error::Failed(format!("{doing}: {}", panic_summary(&p))))?
            .map_err(err)?;
        let missed = errors.take();
        if !missed.is_empty() {
            // The snapshot lacks what could not be read: not a backup.
            let _ = self.repo.delete_snapshots(&[snap.id]);
            return Err(Error::Failed(format!(
                "{doing} to backup target {}: {} entr{} of the volume could not be read, \
                 so the backup was discarded; first: {}",
                self.restic.target.name,
                missed.len(),
                if missed.len() == 1 { "y" } else { "ies" },
                super::fail::below(&missed[0], src)
            )));
        }
        Ok(snap)
    }

    fn info(&self, snap: &SnapshotFile) -> Result<BackupInfo> {
        info(snap).ok_or_else(|| {
            Error::Failed(format!("{}: the new snapshot lacks its description", self.doing))
        })
    }
}

impl Restic {
    /// Opens the repository for a backup of `meta`'s volume whose root
    /// directory is `root`, and runs `work` with it while no prune runs.
    fn backing_up<T>(
        &self,
        meta: &VolumeMeta,
        root: RootMeta,
        progress: OnProgress<'_>,
        work: impl FnOnce(&Run<'_>, &Bars) -> Result<T>,
    ) -> Result<T> {
        let doing = format!("backup of volume {}", meta.volume_name);
        let doing = doing.as_str();
        let desc = Description { meta: meta.clone(), root: Some(root) };
        // Held until the snapshot is saved: no prune in between (see prune).
        let _shared = self.prune_gate.read().unwrap_or_else(PoisonError::into_inner);
        relayed(progress, |bars| {
            let repo = self
                .repo(bars, doing, true)?
                .to_indexed_ids()
                .map_err(|e| self.target.error(doing, &e))?;
            work(&Run { restic: self, repo, doing, meta, desc }, bars)
        })
    }
}

impl Repository for Restic {
    fn backup(
        &self,
        src: &Path,
        meta: &VolumeMeta,
        parent: Option<&str>,
        progress: OnProgress<'_>,
    ) -> Result<BackupInfo> {
        self.backing_up(meta, RootMeta::read(src)?, progress, |run, bars| {
            let errors = Errors::default();
            let source =
                Watched::new(src, bars.clone(), errors.clone()).map_err(|e| run.err(&e))?;
            // Each backup reads a new snapshot, on a dir pool a copy with
            // new inodes and change times: a file is unchanged when its
            // size and modification time are.
            let snap = run.archive(&source, &errors, src, parent, true)?;
            run.info(&snap)
        })
    }

    fn backup_live(
        &self,
        dir: OwnedFd,
        path: &Path,
        meta: &VolumeMeta,
        parent: Option<&str>,
        progress: OnProgress<'_>,
    ) -> Result<BackupInfo> {
        let root = RootMeta::of(dir.as_fd(), path)?;
        self.backing_up(meta, root, progress, |run, bars| live_passes(run, bars, dir, path, parent))
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
        stop: &Arc<AtomicBool>,
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

/// How many times a live backup reads the tree: files that changed while
/// read are read again in the next pass, and kept as read in the last.
const PASSES: usize = 3;

/// A live backup: the tree read in up to [`PASSES`] passes. Each pass
/// after the first has the previous one's snapshot as its parent, so it
/// reads only the files that pass left out (they changed while being
/// read), and replaces it. The last pass keeps such files as read and
/// names them in [`BackupInfo::changed`].
fn live_passes(
    run: &Run<'_>,
    bars: &Bars,
    dir: OwnedFd,
    path: &Path,
    parent: Option<&str>,
) -> Result<BackupInfo> {
    let mut parent = parent.map(str::to_string);
    let mut earlier: Option<SnapshotId> = None;
    let mut stored = 0;
    let mut reopened;
    for pass in 1..=PASSES {
        // A later pass's parent is the earlier pass's snapshot, whose trees
        // only a fresh index finds; without them it would read everything.
        let run = if pass == 1 {
            run
        } else {
            reopened = run.reindexed(bars)?;
            &reopened
        };
        let errors = Errors::default();
        let changed = Changed::default();
        let last = pass == PASSES;
        let source = Live {
            dir: dir.try_clone().map_err(|e| Error::Failed(format!("{}: {e}", run.doing)))?,
            base: path.to_path_buf(),
            bars: bars.clone(),
            errors: errors.clone(),
            changed: changed.clone(),
            last,
        };
        // The live tree keeps its inodes and change times between
        // backups: a file is unchanged when its size, modification and
        // change times are.
        let snap = run.archive(&source, &errors, path, parent.as_deref(), false);
        if let Some(id) = earlier.take() {
            let _ = run.repo.delete_snapshots(&[id]);
        }
        let snap = snap?;
        let mut info = run.info(&snap)?;
        stored += info.stored_bytes;
        let mut changed = changed.take();
        if changed.is_empty() || last {
            changed.sort();
            changed.dedup();
            info.stored_bytes = stored;
            info.changed = changed.iter().map(|p| p.display().to_string()).collect();
            return Ok(info);
        }
        tracing::info!(
            pass,
            files = changed.len(),
            "files changed while being read; reading them again"
        );
        parent = Some(info.id);
        earlier = Some(snap.id);
        // Past the window in which a change time hides a write.
        std::thread::sleep(RACY);
    }
    unreachable!("the last pass returns")
}
