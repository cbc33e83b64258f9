//! Directory-tree work beneath a pool root, done through file descriptors
//! so that no path a user controls is ever resolved from `/`.
//!
//! Every entry is opened relative to its parent with `O_NOFOLLOW`, the
//! entry point with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV)`: a symlink planted inside a volume is removed or
//! copied as a symlink, never followed, and a mount inside a volume stops
//! a removal instead of being emptied. Every walk is the one in
//! `walk.rs`: iterative, with a bounded number of open descriptors, so a
//! tree of any depth is handled; `read.rs` lists a live tree for a backup
//! that reads a volume in place.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;

mod bind;
mod copy;
pub mod read;
#[cfg(test)]
pub(crate) mod testing;
mod walk;

pub use copy::{clone_file, copy};

/// A file's length from its stat. The kernel's `off_t` is never negative
/// here; were it, 0 is the harmless reading.
pub fn stat_size(st: &rfs::Stat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

/// The bytes allocated to a file: the 512-byte blocks its stat counts.
pub fn stat_usage(st: &rfs::Stat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0) * 512
}

/// A stat's nanoseconds (below 10⁹, whatever the field's type on this
/// target) as the signed count timestamps take.
pub fn stat_nsec(ns: impl TryInto<i64>) -> i64 {
    ns.try_into().unwrap_or(0)
}
use walk::{Chain, Id, Visit, at_path};

/// A directory that everything below is confined to.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags =
    OFlags::DIRECTORY.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC).union(OFlags::RDONLY);
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_XDEV)
    .union(ResolveFlags::NO_MAGICLINKS);
/// How a file that a container may be changing is opened for reading:
/// without waiting (opening a FIFO swapped in for a file waits for a
/// writer, forever), without following a symlink, and without making it
/// the daemon's controlling terminal.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Opens for reading the regular file `path` beneath `dir` (no symlink,
/// `..` or mount on the way) that a listing found as `listed` (device,
/// inode; any regular file when `None`). `Ok(None)` when it is no longer
/// that file: gone, or swapped for a symlink, a FIFO, a socket, a device,
/// a directory or another file, as a container can do at any moment.
/// Whatever was swapped in, the open returns at once, and what is not
/// the file listed is closed unread.
pub fn open_listed(
    dir: BorrowedFd<'_>,
    path: impl rustix::path::Arg,
    listed: Option<(u64, u64)>,
) -> io::Result<Option<(OwnedFd, rfs::Stat)>> {
    let fd = match rfs::openat2(dir, path, READ_FLAGS, Mode::empty(), BENEATH) {
        Ok(fd) => fd,
        // Gone; a symlink (or one on the way); a socket; a mount or a
        // non-directory on the way.
        Err(Errno::NOENT | Errno::LOOP | Errno::NXIO | Errno::XDEV | Errno::NOTDIR) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let st = rfs::fstat(&fd)?;
    let same = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && listed.is_none_or(|id| id == walk::stat_id(&st));
    Ok(same.then_some((fd, st)))
}

impl Root {
    /// Opens (creating when missing, parent must exist) a root directory
    /// of a pool's own, root's alone (0700): volumes' files and snapshot
    /// copies are nobody else's to read on the host. One made by an older
    /// version, open to all, is closed here.
    pub fn open(path: &Path) -> io::Result<Root> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("creating {}: {e}", path.display())));
            }
        }
        let root = Root::open_existing(path)?;
        let mode = rfs::fstat(&root.fd)?.st_mode;
        if mode & 0o077 != 0 {
            rfs::fchmod(&root.fd, Mode::from_raw_mode(mode & 0o700))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        Ok(root)
    }

    /// Opens an existing directory as a root; creates nothing.
    pub fn open_existing(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(path, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()).map_err(
            |e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("opening {}: {e}", path.display()),
                )
            },
        )?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    /// Opens the directory at the relative path `rel` (several components)
    /// beneath the root as a root of its own. No component may be a
    /// symlink, `..` or absolute, so whatever is planted on the way, the
    /// result is inside this root. Mounts on the way are crossed: a host
    /// directory may live on another filesystem than its root.
    pub fn open_beneath(&self, rel: &Path) -> io::Result<Root> {
        use std::path::Component;
        if rel.as_os_str().is_empty() {
            return self.try_clone();
        }
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            ));
        }
        let flags = BENEATH.difference(ResolveFlags::NO_XDEV);
        let fd = rfs::openat2(&self.fd, rel, DIR_FLAGS, Mode::empty(), flags).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "{} does not resolve beneath {} without symlinks: {e}",
                    rel.display(),
                    self.path.display()
                ),
            )
        })?;
        Ok(Root { fd, path: self.path.join(rel) })
    }

    /// Another handle on the same directory (for work on another thread).
    pub fn try_clone(&self) -> io::Result<Root> {
        Ok(Root { fd: self.fd.try_clone()?, path: self.path.clone() })
    }

    /// The directory itself, for calls made relative to it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of an entry (for Docker's `Mountpoint`).
    pub fn host_path(&self, key: &str) -> PathBuf {
        self.path.join(key)
    }

    /// Opens the directory `key` beneath the root, refusing symlinks,
    /// `..` escapes and mount crossings.
    pub fn open_dir(&self, key: &str) -> io::Result<OwnedFd> {
        check_key(key)?;
        Ok(rfs::openat2(&self.fd, key, DIR_FLAGS, Mode::empty(), BENEATH)?)
    }

    pub fn exists(&self, key: &str) -> io::Result<bool> {
        match self.open_dir(key) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the directory `key` with the given owner and mode.
    pub fn create_dir(
        &self,
        key: &str,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: u32,
    ) -> io::Result<OwnedFd> {
        check_key(key)?;
        rfs::mkdirat(&self.fd, key, Mode::from_raw_mode(0o700))?;
        let fd = self.open_dir(key)?;
        set_owner_mode(fd.as_fd(), uid, gid, mode)?;
        Ok(fd)
    }

    /// Removes the tree `key` and everything in it. Symlinks are removed,
    /// not followed; a mount found inside stops the removal with an error
    /// naming it, and nothing on the other side is touched. Missing is fine.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        let fd = match self.open_dir(key) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(()),
            Err(e) => return Err(e),
        };
        walk::walk(&self.path.join(key), fd, &mut Remover)?;
        rfs::unlinkat(&self.fd, key, AtFlags::REMOVEDIR)?;
        Ok(())
    }

    /// Moves `key` to `dst_key` in `dst` (same filesystem), refusing to
    /// replace anything there.
    pub fn rename_into(&self, key: &str, dst: &Root, dst_key: &str) -> io::Result<()> {
        check_key(key)?;
        check_key(dst_key)?;
        rfs::renameat_with(&self.fd, key, &dst.fd, dst_key, rfs::RenameFlags::NOREPLACE)?;
        Ok(())
    }

    /// Moves `key` to `dst_key` in `dst` (same filesystem), atomically
    /// replacing what is there.
    pub fn rename_over(&self, key: &str, dst: &Root, dst_key: &str) -> io::Result<()> {
        check_key(key)?;
        check_key(dst_key)?;
        rfs::renameat(&self.fd, key, &dst.fd, dst_key)?;
        Ok(())
    }

    /// Opens the directory `key` even when a filesystem is mounted on it
    /// (a loop volume's mountpoint); still no symlinks, no escape.
    pub fn open_dir_across(&self, key: &str) -> io::Result<OwnedFd> {
        check_key(key)?;
        let flags = BENEATH.difference(ResolveFlags::NO_XDEV);
        Ok(rfs::openat2(&self.fd, key, DIR_FLAGS, Mode::empty(), flags)?)
    }

    /// Swaps `key` here and `other_key` in `other` in one atomic step.
    pub fn exchange(&self, key: &str, other: &Root, other_key: &str) -> io::Result<()> {
        check_key(key)?;
        check_key(other_key)?;
        rfs::renameat_with(&self.fd, key, &other.fd, other_key, rfs::RenameFlags::EXCHANGE)?;
        Ok(())
    }

    /// Creates the file `key` (it must not exist) of `len` bytes, all
    /// hole.
    pub fn create_file(&self, key: &str, len: u64) -> io::Result<OwnedFd> {
        check_key(key)?;
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat2(&self.fd, key, flags, Mode::from_raw_mode(0o600), BENEATH)?;
        rfs::ftruncate(&fd, len)?;
        Ok(fd)
    }

    /// Opens the file `key` for reading and writing.
    pub fn open_file(&self, key: &str) -> io::Result<OwnedFd> {
        check_key(key)?;
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(rfs::openat2(&self.fd, key, flags, Mode::empty(), BENEATH)?)
    }

    /// Removes the file `key`; missing is fine.
    pub fn remove_file(&self, key: &str) -> io::Result<()> {
        check_key(key)?;
        match rfs::unlinkat(&self.fd, key, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes allocated to the file `key`.
    pub fn file_usage(&self, key: &str) -> io::Result<u64> {
        check_key(key)?;
        Ok(stat_usage(&rfs::statat(&self.fd, key, AtFlags::SYMLINK_NOFOLLOW)?))
    }

    /// Whether a filesystem is mounted on the directory `key`.
    pub fn is_mounted(&self, key: &str) -> io::Result<bool> {
        check_key(key)?;
        let child = rfs::openat(&self.fd, key, DIR_FLAGS, Mode::empty())?;
        Ok(mount_id(child.as_fd())? != mount_id(self.fd.as_fd())?)
    }

    /// The names of the root's entries.
    pub fn keys(&self) -> io::Result<Vec<String>> {
        Ok(entries(self.fd.as_fd())?
            .into_iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect())
    }

    /// Removes every entry of the root (leftovers of interrupted work),
    /// going on past what cannot be removed: that is returned, with why.
    pub fn clear(&self) -> io::Result<Vec<(String, io::Error)>> {
        let mut failed = Vec::new();
        for key in self.keys()? {
            if let Err(e) = self.remove(&key) {
                failed.push((key, e));
            }
        }
        Ok(failed)
    }

    /// Capacity and free bytes of the filesystem holding the root.
    /// Returns `(capacity, free)`.
    pub fn space(&self) -> io::Result<(u64, u64)> {
        let st = rfs::fstatvfs(&self.fd)?;
        Ok((st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize))
    }

    /// Whether the filesystem holding the root can make a file share
    /// another's extents (FICLONE: btrfs, xfs with reflink=1), so that
    /// copies there cost no data. Tried on two unnamed temporary files,
    /// which vanish whatever happens; anything failing means no.
    pub fn shares_extents(&self) -> bool {
        let tmp = || {
            rfs::openat(
                &self.fd,
                ".",
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let (Ok(src), Ok(dst)) = (tmp(), tmp()) else { return false };
        // A block of data: cloning an empty file proves nothing.
        rustix::io::write(&src, &[0u8; 4096]).is_ok_and(|n| n == 4096)
            && rfs::ioctl_ficlone(&dst, &src).is_ok()
    }

    /// Flushes the whole filesystem holding the root to disk.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rfs::syncfs(&self.fd)?)
    }

    /// Bytes allocated by the tree `key` (hard links counted once, mounts
    /// inside not counted).
    pub fn usage(&self, key: &str) -> io::Result<u64> {
        let fd = self.open_dir(key)?;
        let mut usage = Usage { total: stat_usage(&rfs::fstat(&fd)?), seen: HashSet::new() };
        walk::walk(&self.path.join(key), fd, &mut usage)?;
        Ok(usage.total)
    }
}

/// Sets a new volume root's owner and mode: chown first, since it clears
/// set-id bits.
pub fn set_owner_mode(
    fd: BorrowedFd<'_>,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
) -> io::Result<()> {
    if uid.is_some() || gid.is_some() {
        rfs::fchown(fd, uid.map(rfs::Uid::from_raw), gid.map(rfs::Gid::from_raw))?;
    }
    rfs::fchmod(fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// Storage keys are generated by us, but check anyway: one component, no
/// dots, so a bug elsewhere cannot turn into a path outside the root.
fn check_key(key: &str) -> io::Result<()> {
    if key.is_empty() || key.starts_with('.') || key.contains('/') || key.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad storage key {key:?}"),
        ));
    }
    Ok(())
}

fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rfs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?.stx_mnt_id)
}

fn entries(fd: BorrowedFd<'_>) -> io::Result<Vec<(CString, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(fd)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let mut ty = entry.file_type();
        if ty == FileType::Unknown {
            ty = FileType::from_raw_mode(rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode);
        }
        out.push((name.to_owned(), ty));
    }
    Ok(out)
}

fn open_child_dir(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(parent, name, DIR_FLAGS, Mode::empty())?)
}

/// Removes what it walks, each directory once it is empty.
struct Remover;

impl Visit for Remover {
    fn file(&mut self, at: &Chain, name: &CStr, _ty: FileType) -> io::Result<()> {
        match rfs::unlinkat(at.fd(), name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(at_path(e, "removing", &at.display(Some(name)))),
        }
    }

    fn enter(&mut self, _at: &Chain, _name: &CStr, _dir: BorrowedFd<'_>) -> io::Result<()> {
        Ok(())
    }

    fn leave(&mut self, at: &Chain, name: &CStr, _dir: BorrowedFd<'_>) -> io::Result<()> {
        rfs::unlinkat(at.fd(), name, AtFlags::REMOVEDIR)
            .map_err(|e| at_path(e, "removing", &at.display(Some(name))))
    }

    fn mount(&mut self, at: &Chain, name: &CStr, _dir: BorrowedFd<'_>) -> io::Result<()> {
        Err(io::Error::other(format!(
            "refusing to delete across a mount boundary at {}",
            at.display(Some(name))
        )))
    }
}

/// Adds up allocated bytes; a file with several links counts once.
struct Usage {
    total: u64,
    seen: HashSet<Id>,
}

impl Visit for Usage {
    fn file(&mut self, at: &Chain, name: &CStr, _ty: FileType) -> io::Result<()> {
        let st = match rfs::statat(at.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()), // removed since it was listed
            Err(e) => return Err(e.into()),
        };
        if st.st_nlink <= 1 || self.seen.insert(walk::stat_id(&st)) {
            self.total += stat_usage(&st);
        }
        Ok(())
    }

    fn enter(&mut self, _at: &Chain, _name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
        self.total += stat_usage(&rfs::fstat(dir)?);
        Ok(())
    }

    fn leave(&mut self, _at: &Chain, _name: &CStr, _dir: BorrowedFd<'_>) -> io::Result<()> {
        Ok(())
    }

    /// What is mounted inside a volume is not the volume's.
    fn mount(&mut self, _at: &Chain, _name: &CStr, _dir: BorrowedFd<'_>) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("vols")).unwrap();
        (dir, root)
    }

    #[test]
    fn remove_never_follows_symlinks_out_of_the_root() {
        let (dir, root) = root();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"precious").unwrap();
        root.create_dir("v1", None, None, 0o755).unwrap();
        let v = root.path().join("v1");
        std::fs::create_dir(v.join("sub")).unwrap();
        std::fs::write(v.join("sub/f"), b"x").unwrap();
        symlink(&outside, v.join("link")).unwrap();
        symlink(outside.join("keep"), v.join("sub/filelink")).unwrap();
        root.remove("v1").unwrap();
        assert!(!v.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"precious");
    }

    #[test]
    fn extent_sharing_is_what_cp_finds_and_leaves_nothing_behind() {
        let (dir, root) = root();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, [1u8; 4096]).unwrap();
        let mut cp = std::process::Command::new("cp");
        let cp_can = cp.arg("--reflink=always").arg(&a).arg(&b).output().unwrap().status.success();
        assert_eq!(root.shares_extents(), cp_can);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn keys_cannot_escape() {
        let (_dir, root) = root();
        for key in ["..", "../x", "a/b", "", ".x"] {
            assert!(root.open_dir(key).is_err(), "{key}");
            assert!(root.remove(key).is_err(), "{key}");
        }
    }

    #[test]
    fn a_symlinked_volume_dir_is_refused() {
        let (dir, root) = root();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        symlink(&outside, root.path().join("v9")).unwrap();
        assert!(root.remove("v9").is_err());
        assert!(outside.join("keep").exists());
    }

    /// The moment between a listing and an open, which a container can
    /// use to swap a file: the open neither waits nor follows, and only
    /// the very file listed is opened.
    #[test]
    fn a_listed_file_swapped_before_its_open_is_not_opened() {
        use testing::{swap_for_fifo, swap_for_symlink, within};
        let (dir, root) = root();
        root.create_dir("v", None, None, 0o755).unwrap();
        let v = root.host_path("v");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"the host's").unwrap();
        let listed = |name: &str| {
            std::fs::write(v.join(name), b"mine").unwrap();
            let st = rfs::stat(v.join(name)).unwrap();
            walk::stat_id(&st)
        };
        let (fifo, link, other) = (listed("fifo"), listed("link"), listed("other"));
        let kept = listed("kept");
        swap_for_fifo(&v.join("fifo"));
        swap_for_symlink(&v.join("link"), &outside);
        // Kept, so that the new file cannot reuse its inode number.
        std::fs::rename(v.join("other"), v.join("other.old")).unwrap();
        std::fs::write(v.join("other"), b"another file").unwrap();
        let vol = root.open_dir("v").unwrap();
        let cases =
            [("fifo", fifo), ("link", link), ("other", other), ("kept", kept), ("gone", kept)];
        let opened = within(10, "opening a swapped file", move || {
            cases.map(|(name, id)| open_listed(vol.as_fd(), name, Some(id)).unwrap().is_some())
        });
        assert_eq!(opened, [false, false, false, true, false]);
    }

    #[test]
    fn usage_counts_hard_links_once() {
        let (_dir, root) = root();
        root.create_dir("u", None, None, 0o755).unwrap();
        let u = root.path().join("u");
        std::fs::write(u.join("f"), vec![7u8; 1 << 20]).unwrap();
        let one = root.usage("u").unwrap();
        std::fs::hard_link(u.join("f"), u.join("g")).unwrap();
        assert_eq!(root.usage("u").unwrap(), one);
        assert!(one >= 1 << 20);
    }
}
