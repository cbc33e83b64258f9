//! The `dir` backend: each volume is a plain directory.
//!
//! ```text
//! <pool>/volumes/v<id>     a volume (Docker's mountpoint)
//! <pool>/snapshots/s<id>   a snapshot: a copy, reflinked per file where possible
//! <pool>/staging/          work in progress
//! <pool>/trash/            work to delete, in the background
//! ```
//!
//! Snapshots are built in `staging/` and renamed into place, so one
//! exists whole or not at all; a failed one is deleted at once. Revert
//! builds the snapshot's copy in `staging/` and swaps it with the volume
//! in one `renameat2(EXCHANGE)`. Deleting a tree takes as long as it has
//! entries, so what can wait (the content a revert replaced, what
//! interrupted work left in `staging/` at start-up) is renamed into
//! `trash/`, which no new work ever uses, and deleted on another thread;
//! what is left there (a crash, a mount inside) is tried again at the
//! next start.
//! Nothing to attach, so activate and deactivate only check the directory.
//! A directory cannot hold a size limit.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::{Backend, BackendKind, Fill, Gate, OnBytes, SnapshotView, Space, Spec};
use crate::tree::{self, Root};

#[derive(Debug)]
pub struct DirBackend {
    volumes: Root,
    snapshots: Root,
    staging: Root,
    trash: Root,
    /// Whether the filesystem shares extents, tried when the pool opens
    /// (off the request path: a hung filesystem must not stall one).
    reflinks: bool,
}

/// A name no earlier entry of `trash/` has: a clock reading.
fn trash_name(key: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}-{key}", nanos.as_nanos())
}

/// Deletes everything in `trash` on another thread; the handle tells
/// what could not be deleted (also logged).
fn sweep(trash: Root) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let failed = match trash.clear() {
            Ok(failed) => failed,
            Err(e) => vec![(trash.path().display().to_string(), e)],
        };
        failed
            .into_iter()
            .map(|(key, e)| {
                tracing::warn!(entry = %trash.host_path(&key).display(), error = %e, "cannot delete; trying again at the next start");
                format!("{key}: {e}")
            })
            .collect()
    })
}

impl DirBackend {
    pub fn open(path: &Path) -> io::Result<Self> {
        DirBackend::open_in(path, None)
    }

    /// With `host_area`, this host's snapshots, staging and trash live in
    /// `<pool>/hosts/<host_area>/` (a pool shared in a cluster): start-up
    /// recovery then never sets aside another host's work in progress.
    pub fn open_in(path: &Path, host_area: Option<&str>) -> io::Result<Self> {
        Root::open(path)?;
        let own = match host_area {
            Some(node) => {
                Root::open(&path.join("hosts"))?;
                path.join("hosts").join(node)
            }
            None => path.to_path_buf(),
        };
        Root::open(&own)?;
        let staging = Root::open(&own.join("staging"))?;
        Ok(DirBackend {
            volumes: Root::open(&path.join("volumes"))?,
            snapshots: Root::open(&own.join("snapshots"))?,
            reflinks: staging.shares_extents(),
            staging,
            trash: Root::open(&own.join("trash"))?,
        })
    }

    /// Deletes the staging entry of failed work, which is useless; a
    /// failure to is only logged, since the work's own error matters more.
    fn discard(&self, work: &str) {
        if let Err(e) = self.staging.remove(work) {
            tracing::warn!(entry = %self.staging.host_path(work).display(), error = %e, "cannot delete failed work");
        }
    }

    /// Moves what interrupted work left in `staging/` into `trash/` (one
    /// rename each: start-up does not wait for deletions), then deletes
    /// `trash/` in the background. Returns the entries that could not be
    /// moved (logged and left where they are), and the sweeper.
    fn set_aside(&self) -> io::Result<(Vec<String>, JoinHandle<Vec<String>>)> {
        let mut stuck = Vec::new();
        for key in self.staging.keys()? {
            if let Err(e) = self.staging.rename_into(&key, &self.trash, &trash_name(&key)) {
                stuck.push(format!("{key}: {e}"));
            }
        }
        for entry in &stuck {
            tracing::warn!(pool = %self.volumes.path().display(), %entry, "cannot clear interrupted work");
        }
        Ok((stuck, sweep(self.trash.try_clone()?)))
    }

    /// An empty staging directory shaped like the volume's root.
    fn stage(&self, work: &str) -> io::Result<()> {
        self.staging.remove(work)?;
        self.staging.create_dir(work, None, None, 0o700)?;
        Ok(())
    }
}

/// Builds directory `snap` in `staging` with `fill` and renames it into
/// `snapshots` (replacing what an interrupted run left there). Half-built
/// work is deleted at once.
pub(super) fn build_in(
    staging: &Root,
    snapshots: &Root,
    snap: &str,
    fill: Fill<'_>,
) -> io::Result<()> {
    staging.remove(snap)?;
    staging.create_dir(snap, None, None, 0o700)?;
    let built = fill(&staging.host_path(snap))
        .and_then(|()| snapshots.remove(snap))
        .and_then(|()| staging.rename_into(snap, snapshots, snap));
    if let Err(e) = built {
        if let Err(e) = staging.remove(snap) {
            tracing::warn!(entry = %staging.host_path(snap).display(), error = %e, "cannot delete failed work");
        }
        return Err(e);
    }
    snapshots.sync()
}

impl Backend for DirBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Dir
    }

    fn enforces_size(&self) -> bool {
        false
    }

    fn copies_share_data(&self) -> bool {
        self.reflinks
    }

    fn create(&self, key: &str, spec: &Spec) -> io::Result<()> {
        self.volumes.create_dir(key, spec.uid, spec.gid, spec.mode.unwrap_or(0o755))?;
        Ok(())
    }

    fn copy(&self, src: &str, dst: &str, on_bytes: OnBytes<'_>) -> io::Result<()> {
        tree::copy(&self.volumes, src, &self.volumes, dst, on_bytes)
    }

    fn activate(&self, key: &str) -> io::Result<PathBuf> {
        self.volumes.open_dir(key).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("volume directory {} is unusable: {e}", self.mountpoint(key).display()),
            )
        })?;
        Ok(self.mountpoint(key))
    }

    fn deactivate(&self, _key: &str) -> io::Result<()> {
        Ok(())
    }

    fn destroy(&self, key: &str) -> io::Result<()> {
        self.volumes.remove(key)
    }

    fn mountpoint(&self, key: &str) -> PathBuf {
        self.volumes.host_path(key)
    }

    fn open_volume(&self, key: &str) -> io::Result<OwnedFd> {
        self.volumes.open_dir(key)
    }

    fn usage(&self, key: &str) -> io::Result<u64> {
        self.volumes.usage(key)
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        self.volumes.exists(key)
    }

    fn snapshot(&self, key: &str, snap: &str, on_bytes: OnBytes<'_>) -> io::Result<()> {
        self.stage(snap)?;
        let built = tree::copy(&self.volumes, key, &self.staging, snap, on_bytes)
            .and_then(|()| self.staging.rename_into(snap, &self.snapshots, snap));
        if let Err(e) = built {
            self.discard(snap);
            return Err(e);
        }
        self.snapshots.sync()
    }

    fn copy_snapshot(&self, snap: &str, key: &str, on_bytes: OnBytes<'_>) -> io::Result<()> {
        tree::copy(&self.snapshots, snap, &self.volumes, key, on_bytes)
    }

    fn revert(
        &self,
        key: &str,
        snap: &str,
        on_bytes: OnBytes<'_>,
        may_swap: Gate<'_>,
    ) -> io::Result<()> {
        self.stage(key)?;
        let swapped = tree::copy(&self.snapshots, snap, &self.staging, key, on_bytes)
            .and_then(|()| may_swap())
            .and_then(|()| self.volumes.exchange(key, &self.staging, key));
        if let Err(e) = swapped {
            self.discard(key);
            return Err(e);
        }
        self.volumes.sync()?;
        // The old content is now in staging. The revert is done: delete it
        // in the background (a crash leaves it for the next start).
        let old = trash_name(key);
        self.staging.rename_into(key, &self.trash, &old)?;
        let trash = self.trash.try_clone()?;
        std::thread::spawn(move || {
            if let Err(e) = trash.remove(&old) {
                tracing::warn!(error = %e, "removing the content a revert replaced");
            }
        });
        Ok(())
    }

    fn delete_snapshot(&self, snap: &str) -> io::Result<()> {
        self.snapshots.remove(snap)
    }

    fn read_snapshot(&self, snap: &str) -> io::Result<SnapshotView> {
        self.snapshots.open_dir(snap)?;
        Ok(SnapshotView::at(self.snapshots.host_path(snap)))
    }

    fn build_snapshot(&self, snap: &str, _like: &str, fill: Fill<'_>) -> io::Result<()> {
        build_in(&self.staging, &self.snapshots, snap, fill)
    }

    fn snapshot_usage(&self, snap: &str) -> io::Result<u64> {
        self.snapshots.usage(snap)
    }

    /// Fails the pool only if `staging/` cannot be listed: an entry that
    /// cannot be cleared is logged and left alone.
    fn recover(&self) -> io::Result<()> {
        self.set_aside().map(drop)
    }

    fn space(&self) -> io::Result<Space> {
        Space::of(&self.volumes)
    }

    fn stored_keys(&self) -> io::Result<Vec<String>> {
        self.volumes.keys()
    }

    fn host_dir(&self, root: &Path, rel: &Path) -> io::Result<Box<dyn Backend>> {
        Ok(Box::new(super::HostDir::new(
            root,
            rel,
            self.snapshots.try_clone()?,
            self.staging.try_clone()?,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::testing::{Mounted, Scratch, make_deep, on_small_stack, open_path};

    #[test]
    fn a_revert_its_gate_refuses_leaves_the_volume_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::open(&dir.path().join("pool")).unwrap();
        b.create("v1", &Spec::default()).unwrap();
        let mp = b.mountpoint("v1");
        std::fs::write(mp.join("f"), b"one").unwrap();
        b.snapshot("v1", "s1", &mut |_| {}).unwrap();
        std::fs::write(mp.join("f"), b"two").unwrap();
        let refused = b.revert("v1", "s1", &mut |_| {}, &|| Err(io::Error::other("lease lost")));
        assert_eq!(refused.unwrap_err().to_string(), "lease lost");
        assert_eq!(std::fs::read(mp.join("f")).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path().join("pool/staging")).unwrap().count(), 0);
    }

    #[test]
    fn revert_swaps_in_the_snapshot_and_snapshots_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::open(&dir.path().join("pool")).unwrap();
        b.create("v1", &Spec::default()).unwrap();
        let mp = b.mountpoint("v1");
        std::fs::write(mp.join("f"), b"one").unwrap();
        let mut copied = 0;
        b.snapshot("v1", "s1", &mut |n| copied += n).unwrap();
        assert_eq!(copied, 3);
        std::fs::write(mp.join("f"), b"two").unwrap();
        std::fs::write(mp.join("new"), b"x").unwrap();
        b.revert("v1", "s1", &mut |_| {}, &|| Ok(())).unwrap();
        assert_eq!(std::fs::read(mp.join("f")).unwrap(), b"one");
        assert!(!mp.join("new").exists());
        // The snapshot is still intact for another revert.
        std::fs::write(mp.join("f"), b"three").unwrap();
        b.revert("v1", "s1", &mut |_| {}, &|| Ok(())).unwrap();
        assert_eq!(std::fs::read(mp.join("f")).unwrap(), b"one");
        // The replaced content goes away in the background.
        assert_eq!(std::fs::read_dir(dir.path().join("pool/staging")).unwrap().count(), 0);
        let trash = dir.path().join("pool/trash");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(&trash).unwrap().count() > 0 {
            assert!(std::time::Instant::now() < deadline, "the old content is never deleted");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn recover_sets_interrupted_work_aside_and_deletes_it_in_the_background() {
        let dir = Scratch::new();
        let pool = dir.path().join("pool");
        let b = DirBackend::open(&pool).unwrap();
        std::fs::create_dir_all(pool.join("staging/s9")).unwrap();
        // Deeper than a recursive deletion survives on a small stack.
        drop(make_deep(open_path(&pool.join("staging/s9")), 12_000));
        on_small_stack(move || {
            let (stuck, sweeper) = b.set_aside().unwrap();
            assert!(stuck.is_empty(), "{stuck:?}");
            assert_eq!(count(&pool.join("staging")), 0, "staging is free at once");
            assert_eq!(sweeper.join().unwrap(), Vec::<String>::new());
            assert_eq!(count(&pool.join("trash")), 0);
        });
    }

    #[test]
    fn recover_reports_and_skips_mounts_in_staging() {
        let dir = tempfile::tempdir().unwrap();
        let pool = dir.path().join("pool");
        let b = DirBackend::open(&pool).unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("keep"), b"the host's").unwrap();
        // One entry is a mountpoint, another has one inside.
        std::fs::create_dir_all(pool.join("staging/s1")).unwrap();
        std::fs::create_dir_all(pool.join("staging/s2/m")).unwrap();
        let Some(_s1) = Mounted::bind(&host, &pool.join("staging/s1")) else { return };
        let Some(mut s2) = Mounted::bind(&host, &pool.join("staging/s2/m")) else { return };

        let (stuck, sweeper) = b.set_aside().unwrap();
        let trashed = std::fs::read_dir(pool.join("trash")).unwrap().next().unwrap().unwrap();
        s2.moved_to(trashed.path().join("m"));
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert!(stuck[0].starts_with("s1:"), "{stuck:?}");
        let failed = sweeper.join().unwrap();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].contains("mount boundary"), "{failed:?}");
        assert!(failed[0].contains("s2"), "{failed:?}");
        assert_eq!(std::fs::read(host.join("keep")).unwrap(), b"the host's");
        // And the next start-up starts too.
        DirBackend::open(&pool).unwrap().recover().unwrap();
    }

    #[test]
    fn snapshots_keep_mountpoints_empty() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::open(&dir.path().join("pool")).unwrap();
        b.create("v1", &Spec::default()).unwrap();
        let mp = b.mountpoint("v1");
        std::fs::create_dir(mp.join("m")).unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret"), b"x").unwrap();
        let Some(_m) = Mounted::bind(&host, &mp.join("m")) else { return };
        b.snapshot("v1", "s1", &mut |_| {}).unwrap();
        let m = dir.path().join("pool/snapshots/s1/m");
        assert!(m.is_dir());
        assert_eq!(count(&m), 0);
    }

    #[test]
    fn failed_snapshots_and_reverts_leave_nothing_in_staging() {
        let dir = tempfile::tempdir().unwrap();
        let pool = dir.path().join("pool");
        std::fs::create_dir_all(pool.join("staging")).unwrap();
        // Staging too small for the volume: the copies fail half-way.
        let Some(_small) = Mounted::tmpfs(&pool.join("staging"), 1 << 20) else { return };
        let b = DirBackend::open(&pool).unwrap();
        b.create("v1", &Spec::default()).unwrap();
        std::fs::write(b.mountpoint("v1").join("big"), vec![1u8; 2 << 20]).unwrap();
        assert!(b.snapshot("v1", "s1", &mut |_| {}).is_err());
        assert_eq!(count(&pool.join("staging")), 0);
        assert_eq!(count(&pool.join("snapshots")), 0);

        std::fs::create_dir(pool.join("snapshots/s2")).unwrap();
        std::fs::write(pool.join("snapshots/s2/big"), vec![2u8; 2 << 20]).unwrap();
        assert!(b.revert("v1", "s2", &mut |_| {}, &|| Ok(())).is_err());
        assert_eq!(count(&pool.join("staging")), 0);
        assert_eq!(std::fs::read(b.mountpoint("v1").join("big")).unwrap(), vec![1u8; 2 << 20]);
    }
}
