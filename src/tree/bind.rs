//! Binds of directories onto entries of a root: the exposed mountpoints
//! (`serve --mount-root`). A bind is cloned from a descriptor, so what
//! is bound is exactly the directory that was opened (beneath its pool,
//! without symlinks), whatever was planted on its path since; the entry
//! it is bound on is never followed either.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, Mode};
use rustix::io::Errno;
use rustix::mount::{self as rmnt, MoveMountFlags, OpenTreeFlags, UnmountFlags};

use super::{DIR_FLAGS, Root, check_key, mount_id};

/// How many mounts stacked on one entry are taken off before giving up:
/// only a bug or someone else stacks them, and neither is followed far.
const MAX_STACKED: usize = 8;

impl Root {
    /// Binds the directory `src` on the entry `key` (made when missing),
    /// unless that directory is bound there already; anything else
    /// mounted there goes first.
    pub fn bind(&self, key: &str, src: BorrowedFd<'_>) -> io::Result<()> {
        check_key(key)?;
        match rfs::mkdirat(&self.fd, key, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        if self.shows(key, src)? {
            return Ok(());
        }
        self.unmount_all(key)?;
        // No flag follows a symlink, and the entry was opened as a
        // directory without following one.
        let target = rfs::openat(&self.fd, key, DIR_FLAGS, Mode::empty())?;
        let tree = rmnt::open_tree(
            src,
            c"",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH,
        )?;
        rmnt::move_mount(
            &tree,
            c"",
            &target,
            c"",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("binding on {}: {e}", self.host_path(key).display()),
            )
        })
    }

    /// Makes the bind on `key` read-only (`MS_REMOUNT|MS_BIND|MS_RDONLY`),
    /// keeping its other flags: Docker's bind of it into a container
    /// starts from its flags, read-only included.
    pub fn make_read_only(&self, key: &str) -> io::Result<()> {
        use rustix::fs::StatVfsMountFlags as F;
        use rustix::mount::MountFlags as M;
        check_key(key)?;
        let path = self.host_path(key);
        let now = rfs::statvfs(&path)?.f_flag;
        let mut flags = M::BIND | M::RDONLY;
        for (have, keep) in [(F::NOSUID, M::NOSUID), (F::NODEV, M::NODEV), (F::NOEXEC, M::NOEXEC)] {
            if now.contains(have) {
                flags |= keep;
            }
        }
        rmnt::mount_remount(&path, flags, "").map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("making {} read-only: {e}", path.display()),
            )
        })
    }

    /// Whether something is mounted on the entry `key` and shows the
    /// directory `src` (the same directory on the same filesystem).
    pub fn shows(&self, key: &str, src: BorrowedFd<'_>) -> io::Result<bool> {
        check_key(key)?;
        let entry = match rfs::openat(&self.fd, key, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if mount_id(entry.as_fd())? == mount_id(self.fd.as_fd())? {
            return Ok(false);
        }
        let (a, b) = (rfs::fstat(&entry)?, rfs::fstat(src)?);
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }

    /// Takes every mount off the entry `key`, then removes it; missing is
    /// fine. An entry that is not an empty directory once unmounted is
    /// not ours and stays, with an error.
    pub fn unbind(&self, key: &str) -> io::Result<()> {
        self.unmount_all(key)?;
        match rfs::unlinkat(&self.fd, key, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("removing {}: {e}", self.host_path(key).display()),
            )),
        }
    }

    /// Unmounts what is mounted on the entry `key`, top first. Detached:
    /// a process with a file open in there must not keep the mountpoint
    /// in place; the filesystem stays alive while it is used.
    fn unmount_all(&self, key: &str) -> io::Result<()> {
        check_key(key)?;
        for _ in 0..MAX_STACKED {
            match self.is_mounted(key) {
                Ok(false) => return Ok(()),
                Ok(true) => {}
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(()),
                Err(e) => return Err(e),
            }
            // By path, as umount2 only takes one; NOFOLLOW keeps it at the
            // entry, and the root's own path is the daemon's to choose.
            rmnt::unmount(self.host_path(key), UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
                .map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("unmounting {}: {e}", self.host_path(key).display()),
                    )
                })?;
        }
        Err(io::Error::other(format!(
            "{} has more than {MAX_STACKED} mounts stacked on it",
            self.host_path(key).display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// A pool holding volume `v1` (with a file `f`) and a mount root.
    fn pool_and_mounts() -> (tempfile::TempDir, Root, Root) {
        let dir = tempfile::tempdir().unwrap();
        let pool = Root::open(&dir.path().join("pool")).unwrap();
        let mounts = Root::open(&dir.path().join("mounts")).unwrap();
        pool.create_dir("v1", None, None, 0o755).unwrap();
        std::fs::write(pool.host_path("v1").join("f"), b"mine").unwrap();
        (dir, pool, mounts)
    }

    #[test]
    fn a_bind_shows_the_opened_directory_even_once_its_path_is_a_symlink() {
        if !as_root() {
            return;
        }
        let (dir, pool, mounts) = pool_and_mounts();
        let src = pool.open_dir("v1").unwrap();
        // Planted after the volume was opened: a bind by path would follow it.
        std::fs::rename(pool.host_path("v1"), dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink("/etc", pool.host_path("v1")).unwrap();

        mounts.bind("1v1", src.as_fd()).unwrap();
        mounts.bind("1v1", src.as_fd()).unwrap();
        assert!(mounts.shows("1v1", src.as_fd()).unwrap());
        assert_eq!(std::fs::read(mounts.host_path("1v1").join("f")).unwrap(), b"mine");
        mounts.unbind("1v1").unwrap();
        assert!(!mounts.host_path("1v1").exists(), "one bind, taken off whole");
        mounts.unbind("1v1").unwrap();
    }

    #[test]
    fn an_entry_that_is_a_symlink_is_never_bound_through() {
        if !as_root() {
            return;
        }
        let (dir, pool, mounts) = pool_and_mounts();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, mounts.host_path("1v1")).unwrap();
        let src = pool.open_dir("v1").unwrap();
        assert!(mounts.bind("1v1", src.as_fd()).is_err());
        assert!(mounts.unbind("1v1").is_err(), "not an entry of ours");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
