//! Host-path volumes (`-o path=/srv/x`): the volume *is* an existing host
//! directory, under one of the configured `host_path_roots`. Its
//! snapshots live in the pool it was created in.
//!
//! Nothing here ever deletes the host directory or its contents: destroy
//! (purge, deallocate) is a no-op. Revert alone replaces the content, the
//! same way as in a `dir` pool: the snapshot's copy is built beside the
//! directory (`ballast-revert-<name>-<time>` in its parent, on the same
//! filesystem, created fresh so that it can never be someone else's) and
//! swapped in with one `renameat2(RENAME_EXCHANGE)`.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{Backend, BackendKind, Fill, Gate, OnBytes, SnapshotView, Space, Spec};
use crate::tree::{self, Root};

#[derive(Debug)]
pub struct HostDir {
    /// The host directory's parent, and its name in there.
    parent: Root,
    name: String,
    path: PathBuf,
    /// The pool's snapshots and staging area.
    snapshots: Root,
    staging: Root,
}

impl HostDir {
    /// The host directory `rel` beneath the host-path root `root`. Its
    /// parent is opened from the root's descriptor, refusing symlinks and
    /// `..` on the way, so a directory swapped for a symlink since the
    /// volume was created cannot lead outside the root: every operation
    /// is checked this way each time. The path handed to Docker is checked
    /// when it is handed over, but Docker resolves it again by name: the
    /// roots must be writable by root only (README says so), unless
    /// `--mount-root` hands Docker a bind made from the descriptor.
    pub fn new(root: &Path, rel: &Path, snapshots: Root, staging: Root) -> io::Result<HostDir> {
        let path = root.join(rel);
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a usable host path", path.display()),
            )
        };
        let name = rel.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?.to_string();
        let parent = Root::open_existing(root)?.open_beneath(rel.parent().ok_or_else(bad)?)?;
        Ok(HostDir { parent, name, path, snapshots, staging })
    }

    /// A fresh name for the revert's work directory beside the host dir.
    fn revert_name(&self) -> String {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        format!("ballast-revert-{}-{}", self.name, nanos.as_nanos())
    }
}

impl Backend for HostDir {
    fn kind(&self) -> BackendKind {
        BackendKind::Dir
    }

    fn enforces_size(&self) -> bool {
        false
    }

    /// The directory must already exist; it is used as it is.
    fn create(&self, key: &str, _spec: &Spec) -> io::Result<()> {
        self.open_volume(key).map(drop)
    }

    fn open_volume(&self, _key: &str) -> io::Result<OwnedFd> {
        self.parent.open_dir(&self.name).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "host path {} must be an existing directory and not itself a mount point: {e}",
                    self.path.display()
                ),
            )
        })
    }

    fn copy(&self, _src: &str, _dst: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a host-path volume cannot be filled from another volume",
        ))
    }

    fn activate(&self, key: &str) -> io::Result<PathBuf> {
        self.create(key, &Spec::default())?;
        Ok(self.path.clone())
    }

    fn deactivate(&self, _key: &str) -> io::Result<()> {
        Ok(())
    }

    /// Never deletes anything: the directory belongs to the host.
    fn destroy(&self, _key: &str) -> io::Result<()> {
        Ok(())
    }

    fn mountpoint(&self, _key: &str) -> PathBuf {
        self.path.clone()
    }

    fn usage(&self, _key: &str) -> io::Result<u64> {
        self.parent.usage(&self.name)
    }

    fn exists(&self, _key: &str) -> io::Result<bool> {
        self.parent.exists(&self.name)
    }

    fn snapshot(&self, _key: &str, snap: &str, on_bytes: OnBytes<'_>) -> io::Result<()> {
        self.staging.remove(snap)?;
        self.staging.create_dir(snap, None, None, 0o700)?;
        let built = tree::copy(&self.parent, &self.name, &self.staging, snap, on_bytes)
            .and_then(|()| self.staging.rename_into(snap, &self.snapshots, snap));
        if let Err(e) = built {
            // A half-built snapshot is useless; the copy's error matters more.
            if let Err(e) = self.staging.remove(snap) {
                tracing::warn!(entry = %self.staging.host_path(snap).display(), error = %e, "cannot delete a failed snapshot");
            }
            return Err(e);
        }
        self.snapshots.sync()
    }

    fn copy_snapshot(&self, _snap: &str, _key: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a host-path volume cannot be filled from a snapshot",
        ))
    }

    fn revert(
        &self,
        _key: &str,
        snap: &str,
        on_bytes: OnBytes<'_>,
        may_swap: Gate<'_>,
    ) -> io::Result<()> {
        let work = self.revert_name();
        // mkdir fails if the name exists: only a directory made here is
        // ever removed here.
        self.parent.create_dir(&work, None, None, 0o700)?;
        let swapped = tree::copy(&self.snapshots, snap, &self.parent, &work, on_bytes)
            .and_then(|()| may_swap())
            .and_then(|()| self.parent.exchange(&self.name, &self.parent, &work))
            .and_then(|()| self.parent.sync());
        // Either the half-built copy or, after the swap, the old content;
        // the swap's own error comes first.
        let removed = self.parent.remove(&work);
        swapped.and(removed)
    }

    fn delete_snapshot(&self, snap: &str) -> io::Result<()> {
        self.snapshots.remove(snap)
    }

    fn read_snapshot(&self, snap: &str) -> io::Result<SnapshotView> {
        self.snapshots.open_dir(snap)?;
        Ok(SnapshotView::at(self.snapshots.host_path(snap)))
    }

    fn build_snapshot(&self, snap: &str, _like: &str, fill: Fill<'_>) -> io::Result<()> {
        super::dir::build_in(&self.staging, &self.snapshots, snap, fill)
    }

    fn snapshot_usage(&self, snap: &str) -> io::Result<u64> {
        self.snapshots.usage(snap)
    }

    fn recover(&self) -> io::Result<()> {
        Ok(())
    }

    fn space(&self) -> io::Result<Space> {
        Space::of(&self.parent)
    }

    fn stored_keys(&self) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::testing::Mounted;

    #[test]
    fn a_failed_snapshot_leaves_nothing_in_staging() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("big"), vec![1u8; 2 << 20]).unwrap();
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        // Staging too small for the directory: the copy fails half-way.
        let Some(_small) = Mounted::tmpfs(&staging, 1 << 20) else { return };
        let snapshots = Root::open(&dir.path().join("snapshots")).unwrap();
        let staging_root = Root::open_existing(&staging).unwrap();
        let h = HostDir::new(dir.path(), Path::new("host"), snapshots, staging_root).unwrap();
        assert!(h.snapshot("v1", "s1", &mut |_| {}).is_err());
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join("snapshots")).unwrap().count(), 0);
    }
}
