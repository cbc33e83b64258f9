//! The `dir` backend: each volume is a plain directory.
//!
//! ```text
//! <pool>/volumes/v<id>     a volume (Docker's mountpoint)
//! <pool>/snapshots/s<id>   a snapshot: a copy, reflinked per file where possible
//! <pool>/staging/          work in progress; cleared at start-up
//! ```
//!
//! Snapshots are built in `staging/` and renamed into place, so one
//! exists whole or not at all. Revert builds the snapshot's copy in
//! `staging/` and swaps it with the volume in one `renameat2(EXCHANGE)`.
//! Nothing to attach, so activate and deactivate only check the directory.
//! A directory cannot hold a size limit.

use std::io;
use std::path::{Path, PathBuf};

use super::{Backend, BackendKind, OnBytes, Space, Spec};
use crate::tree::{self, Root};

#[derive(Debug)]
pub struct DirBackend {
    volumes: Root,
    snapshots: Root,
    staging: Root,
}

impl DirBackend {
    pub fn open(path: &Path) -> io::Result<Self> {
        Root::open(path)?;
        Ok(DirBackend {
            volumes: Root::open(&path.join("volumes"))?,
            snapshots: Root::open(&path.join("snapshots"))?,
            staging: Root::open(&path.join("staging"))?,
        })
    }

    /// An empty staging directory shaped like the volume's root.
    fn stage(&self, work: &str) -> io::Result<()> {
        self.staging.remove(work)?;
        self.staging.create_dir(work, None, None, 0o700)?;
        Ok(())
    }
}

impl Backend for DirBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Dir
    }

    fn enforces_size(&self) -> bool {
        false
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

    fn usage(&self, key: &str) -> io::Result<u64> {
        self.volumes.usage(key)
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        self.volumes.exists(key)
    }

    fn snapshot(&self, key: &str, snap: &str, on_bytes: OnBytes<'_>) -> io::Result<()> {
        self.stage(snap)?;
        tree::copy(&self.volumes, key, &self.staging, snap, on_bytes)?;
        self.staging.rename_into(snap, &self.snapshots, snap)?;
        self.snapshots.sync()
    }

    fn copy_snapshot(&self, snap: &str, key: &str, on_bytes: OnBytes<'_>) -> io::Result<()> {
        tree::copy(&self.snapshots, snap, &self.volumes, key, on_bytes)
    }

    fn revert(&self, key: &str, snap: &str, on_bytes: OnBytes<'_>) -> io::Result<()> {
        self.stage(key)?;
        tree::copy(&self.snapshots, snap, &self.staging, key, on_bytes)?;
        self.volumes.exchange(key, &self.staging, key)?;
        self.volumes.sync()?;
        // The old content is now in staging. The revert is done: delete it
        // in the background, under a name no later revert will stage (a
        // crash leaves it for `recover`).
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let old = format!("old-{key}-{}", nanos.as_nanos());
        self.staging.rename_into(key, &self.staging, &old)?;
        let staging = self.staging.try_clone()?;
        std::thread::spawn(move || {
            if let Err(e) = staging.remove(&old) {
                tracing::warn!(error = %e, "removing the content a revert replaced");
            }
        });
        Ok(())
    }

    fn delete_snapshot(&self, snap: &str) -> io::Result<()> {
        self.snapshots.remove(snap)
    }

    fn snapshot_usage(&self, snap: &str) -> io::Result<u64> {
        self.snapshots.usage(snap)
    }

    fn recover(&self) -> io::Result<()> {
        let n = self.staging.clear()?;
        if n > 0 {
            tracing::warn!(pool = %self.volumes.path().display(), entries = n, "cleared interrupted work");
        }
        Ok(())
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
        b.revert("v1", "s1", &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(mp.join("f")).unwrap(), b"one");
        assert!(!mp.join("new").exists());
        // The snapshot is still intact for another revert.
        std::fs::write(mp.join("f"), b"three").unwrap();
        b.revert("v1", "s1", &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(mp.join("f")).unwrap(), b"one");
        // The replaced content goes away in the background.
        let staging = dir.path().join("pool/staging");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(&staging).unwrap().count() > 0 {
            assert!(std::time::Instant::now() < deadline, "staging never emptied");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn recover_clears_interrupted_work() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::open(&dir.path().join("pool")).unwrap();
        std::fs::create_dir_all(dir.path().join("pool/staging/s9/deep")).unwrap();
        b.recover().unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("pool/staging")).unwrap().count(), 0);
    }
}
