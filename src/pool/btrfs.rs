//! The `btrfs` backend: each volume is a subvolume, each snapshot a
//! read-only snapshot subvolume, and `size` a quota-group limit.
//!
//! ```text
//! <pool>/volumes/v<id>     a subvolume (Docker's mountpoint)
//! <pool>/snapshots/s<id>   a read-only snapshot of it: O(1), atomic
//! <pool>/staging/          work in progress; cleared at start-up
//! ```
//!
//! Clones (`from-volume`, `from-snapshot`) are writable snapshots, O(1).
//! Revert makes a writable snapshot of the snapshot in `staging/`, swaps it
//! with the volume in one `renameat2(RENAME_EXCHANGE)`, and deletes the old
//! subvolume. A replaced subvolume's size limit is carried over to the new
//! one, since a limit belongs to a subvolume's qgroup.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{Backend, BackendKind, Fill, Gate, OnBytes, SnapshotView, Space, Spec};
use crate::sys::btrfs as ioc;
use crate::tree::{self, Root};

#[derive(Debug)]
pub struct BtrfsBackend {
    volumes: Root,
    snapshots: Root,
    staging: Root,
}

/// Refuses a path that is not on btrfs, naming what it is on.
pub fn check_btrfs(path: &Path) -> io::Result<()> {
    let st = rustix::fs::statfs(path)?;
    if st.f_type as i64 != ioc::SUPER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not on a btrfs filesystem (filesystem type {:#x})",
                path.display(),
                st.f_type
            ),
        ));
    }
    Ok(())
}

impl BtrfsBackend {
    pub fn open(path: &Path) -> io::Result<Self> {
        check_btrfs(path)?;
        Root::open(path)?;
        Ok(BtrfsBackend {
            volumes: Root::open(&path.join("volumes"))?,
            snapshots: Root::open(&path.join("snapshots"))?,
            staging: Root::open(&path.join("staging"))?,
        })
    }

    /// The size limit of subvolume `key` in `root`, if it has one.
    fn limit_of(root: &Root, key: &str) -> io::Result<Option<u64>> {
        let fd = root.open_dir(key)?;
        let id = ioc::subvol_id(fd.as_fd())?;
        Ok(ioc::qgroup(fd.as_fd(), id)?.and_then(|q| q.limit))
    }

    /// Deletes subvolume `key` in `root`; missing is fine.
    fn delete(root: &Root, key: &str) -> io::Result<()> {
        match ioc::subvol_delete(root.fd(), key) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Puts a writable snapshot of `src_root`/`src` at `dst_root`/`dst`,
    /// with `limit` as its size limit. The kernel gives a snapshot its
    /// source's limit, so "no limit" is set explicitly too.
    fn clone_to(
        src_root: &Root,
        src: &str,
        dst_root: &Root,
        dst: &str,
        limit: Option<u64>,
    ) -> io::Result<()> {
        let source = src_root.open_dir(src)?;
        ioc::snapshot(source.as_fd(), dst_root.fd(), dst, false)?;
        let fd = dst_root.open_dir(dst)?;
        match limit {
            Some(limit) => {
                ioc::quota_enable(fd.as_fd())?;
                ioc::qgroup_limit(fd.as_fd(), limit)
            }
            None => match ioc::qgroup_limit(fd.as_fd(), ioc::NO_LIMIT) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTCONN.raw_os_error()) => {
                    Ok(())
                } // quotas off
                other => other,
            },
        }
    }

    /// Replaces the (new, empty) volume `key` with a clone of
    /// `src_root`/`src`, keeping its size limit.
    fn replace_with_clone(&self, src_root: &Root, src: &str, key: &str) -> io::Result<()> {
        let limit = Self::limit_of(&self.volumes, key)?;
        Self::delete(&self.volumes, key)?;
        Self::clone_to(src_root, src, &self.volumes, key, limit)
    }

    /// Bytes referenced by subvolume `key` in `root`, from its qgroup when
    /// quotas are on, else by walking it.
    fn referenced(root: &Root, key: &str) -> io::Result<u64> {
        let fd = root.open_dir(key)?;
        let id = ioc::subvol_id(fd.as_fd())?;
        // Commit first: qgroup numbers move at transaction commit.
        rustix::fs::syncfs(&fd)?;
        match ioc::qgroup(fd.as_fd(), id)? {
            Some(q) => Ok(q.referenced),
            None => root.usage(key),
        }
    }
}

impl Backend for BtrfsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Btrfs
    }

    fn enforces_size(&self) -> bool {
        true
    }

    fn copies_share_data(&self) -> bool {
        true
    }

    fn create(&self, key: &str, spec: &Spec) -> io::Result<()> {
        ioc::subvol_create(self.volumes.fd(), key)?;
        let fd = self.volumes.open_dir(key)?;
        tree::set_owner_mode(fd.as_fd(), spec.uid, spec.gid, spec.mode.unwrap_or(0o755))?;
        if let Some(size) = spec.size {
            ioc::quota_enable(fd.as_fd())?;
            ioc::qgroup_limit(fd.as_fd(), size)?;
        }
        Ok(())
    }

    fn copy(&self, src: &str, dst: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        self.replace_with_clone(&self.volumes, src, dst)
    }

    fn activate(&self, key: &str) -> io::Result<PathBuf> {
        self.volumes.open_dir(key)?;
        Ok(self.mountpoint(key))
    }

    fn deactivate(&self, _key: &str) -> io::Result<()> {
        Ok(())
    }

    fn destroy(&self, key: &str) -> io::Result<()> {
        Self::delete(&self.volumes, key)
    }

    fn mountpoint(&self, key: &str) -> PathBuf {
        self.volumes.host_path(key)
    }

    fn open_volume(&self, key: &str) -> io::Result<OwnedFd> {
        self.volumes.open_dir(key)
    }

    fn usage(&self, key: &str) -> io::Result<u64> {
        Self::referenced(&self.volumes, key)
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        self.volumes.exists(key)
    }

    fn snapshot(&self, key: &str, snap: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        let source = self.volumes.open_dir(key)?;
        ioc::snapshot(source.as_fd(), self.snapshots.fd(), snap, true)
    }

    fn copy_snapshot(&self, snap: &str, key: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        self.replace_with_clone(&self.snapshots, snap, key)
    }

    fn revert(
        &self,
        key: &str,
        snap: &str,
        _on_bytes: OnBytes<'_>,
        may_swap: Gate<'_>,
    ) -> io::Result<()> {
        let limit = Self::limit_of(&self.volumes, key)?;
        Self::delete(&self.staging, key)?;
        Self::clone_to(&self.snapshots, snap, &self.staging, key, limit)?;
        if let Err(e) = may_swap() {
            // The refusal is the news; a leftover is cleared at start.
            let _ = Self::delete(&self.staging, key);
            return Err(e);
        }
        self.volumes.exchange(key, &self.staging, key)?;
        self.volumes.sync()?;
        Self::delete(&self.staging, key)
    }

    fn delete_snapshot(&self, snap: &str) -> io::Result<()> {
        Self::delete(&self.snapshots, snap)
    }

    fn read_snapshot(&self, snap: &str) -> io::Result<SnapshotView> {
        self.snapshots.open_dir(snap)?;
        Ok(SnapshotView::at(self.snapshots.host_path(snap)))
    }

    /// A subvolume built in staging and renamed into place: reverting to
    /// it later clones it, so it needs no size limit of its own.
    fn build_snapshot(&self, snap: &str, _like: &str, fill: Fill<'_>) -> io::Result<()> {
        Self::delete(&self.staging, snap)?;
        ioc::subvol_create(self.staging.fd(), snap)?;
        let built = fill(&self.staging.host_path(snap))
            .and_then(|()| Self::delete(&self.snapshots, snap))
            .and_then(|()| self.staging.rename_into(snap, &self.snapshots, snap));
        if let Err(e) = built {
            if let Err(e) = Self::delete(&self.staging, snap) {
                tracing::warn!(entry = %self.staging.host_path(snap).display(), error = %e, "cannot delete failed work");
            }
            return Err(e);
        }
        self.snapshots.sync()
    }

    fn snapshot_usage(&self, snap: &str) -> io::Result<u64> {
        Self::referenced(&self.snapshots, snap)
    }

    /// Fails the pool only if its staging cannot be listed: an entry that
    /// cannot be cleared is logged and left.
    fn recover(&self) -> io::Result<()> {
        for key in self.staging.keys()? {
            // Subvolumes go by ioctl (the kernel frees their content in
            // the background); anything else by the tree walk.
            let cleared = Self::delete(&self.staging, &key).or_else(|_| self.staging.remove(&key));
            if let Err(e) = cleared {
                tracing::warn!(entry = %self.staging.host_path(&key).display(), error = %e, "cannot clear interrupted work");
            }
        }
        Ok(())
    }

    fn space(&self) -> io::Result<Space> {
        Space::of(&self.volumes)
    }

    fn stored_keys(&self) -> io::Result<Vec<String>> {
        self.volumes.keys()
    }
}
