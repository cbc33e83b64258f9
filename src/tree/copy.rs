//! Copies that keep everything a file has: type, mode, owner, times,
//! xattrs, symlinks, hard links and holes; data is reflinked where the
//! filesystem shares extents. Mounts inside the source are not copied:
//! their mountpoints are, empty.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps,
};
use rustix::io::Errno;

use super::walk::{Chain, Id, Visit, at_path, id_of, stat_id, walk};
use super::{BENEATH, DIR_FLAGS, Root, check_key, open_child_dir, open_listed};

/// Copies the contents of `src_key` in `src` into the existing directory
/// `dst_key` in `dst`, keeping types, modes, owners, timestamps, xattrs,
/// symlinks, hard links and holes; files are reflinked where the
/// filesystem can. `on_bytes` hears how many bytes each file added.
pub fn copy(
    src: &Root,
    src_key: &str,
    dst: &Root,
    dst_key: &str,
    on_bytes: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let s = src.open_dir(src_key)?;
    let d = dst.open_dir(dst_key)?;
    let mut copier = Copier {
        dst: Chain::new(&dst.path.join(dst_key), d.try_clone()?)?,
        dst_root: d.as_fd(),
        links: HashMap::new(),
        on_bytes,
    };
    walk(&src.path.join(src_key), s.try_clone()?, &mut copier)?;
    copy_metadata(s.as_fd(), d.as_fd())?;
    // Durable before anyone is told the copy exists.
    rfs::syncfs(&d)?;
    Ok(())
}

/// Copies the file `src_key` of `src` to the new file `dst_key` of `dst`:
/// a reflink where the filesystem shares extents, else the data segments
/// only, so holes stay holes. Durable when it returns.
pub fn clone_file(src: &Root, src_key: &str, dst: &Root, dst_key: &str) -> io::Result<()> {
    check_key(src_key)?;
    let Some((s, st)) = open_listed(src.fd(), src_key, None)? else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", src.host_path(src_key).display()),
        ));
    };
    let d = dst.create_file(dst_key, 0)?;
    copy_file(&s, &d, super::stat_size(&st))?;
    rfs::fsync(&d)?;
    Ok(())
}

/// Walks the source while keeping `dst` in step with it.
struct Copier<'a> {
    /// Where the copy stands: the source's current directory's twin.
    dst: Chain,
    dst_root: BorrowedFd<'a>,
    /// Files with several links: (dev, ino) of the source → its copy.
    links: HashMap<Id, FirstCopy>,
    on_bytes: &'a mut dyn FnMut(u64),
}

/// Where the first copy of a file with several links went.
struct FirstCopy {
    dir: Id,
    /// The directory's path below the destination root, when short
    /// enough to be opened by path.
    path: Option<PathBuf>,
    name: CString,
}

impl Copier<'_> {
    /// Links `name` in the current directory to the first copy; false if
    /// that copy cannot be reached (too deep to name by path, and no
    /// longer open).
    fn link(&self, first: &FirstCopy, name: &CStr) -> io::Result<bool> {
        let reopened;
        let dir = match (self.dst.open_level(first.dir), &first.path) {
            (Some(fd), _) => fd,
            (None, Some(path)) => {
                reopened = rfs::openat2(self.dst_root, path, DIR_FLAGS, Mode::empty(), BENEATH)?;
                if id_of(reopened.as_fd())? != first.dir {
                    return Ok(false);
                }
                reopened.as_fd()
            }
            (None, None) => return Ok(false),
        };
        rfs::linkat(dir, &first.name, self.dst.fd(), name, AtFlags::empty())?;
        Ok(true)
    }

    /// Copies the regular file `name`, which `st` describes; false when
    /// it changed before it could be opened, and nothing was copied.
    fn regular_file(&mut self, at: &Chain, name: &CStr, st: &Stat) -> io::Result<bool> {
        let key = stat_id(st);
        let linked = st.st_nlink > 1;
        if let Some(first) = self.links.get(&key).filter(|_| linked) {
            if self.link(first, name)? {
                return Ok(true);
            }
            // Its data is copied instead; later links to the same file
            // are made to this nearer copy.
            tracing::warn!(
                path = %at.display(Some(name)),
                "a hard link too deep to recreate; copying the file's data instead"
            );
        }
        let Some((s, st)) = open_listed(at.fd(), name, Some(key))? else {
            return Ok(false);
        };
        let d = rfs::openat(
            self.dst.fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        copy_file(&s, &d, super::stat_size(&st))?;
        copy_metadata(s.as_fd(), d.as_fd())?;
        (self.on_bytes)(super::stat_size(&st));
        // Only a copy that exists is linked to.
        if linked {
            let first = FirstCopy {
                dir: self.dst.id(),
                path: self.dst.short_path(),
                name: name.to_owned(),
            };
            self.links.insert(key, first);
        }
        Ok(true)
    }

    /// A new directory in the copy, open, for `name`.
    fn make_dir(&self, name: &CStr) -> io::Result<OwnedFd> {
        rfs::mkdirat(self.dst.fd(), name, Mode::from_raw_mode(0o700))?;
        open_child_dir(self.dst.fd(), name)
    }
}

impl Visit for Copier<'_> {
    /// Copies the entry as what it is now, which may not be what the
    /// listing said: a container can remove, replace or swap any entry
    /// at any moment. What changes between a look and an open is left
    /// out (and logged), never waited on or followed.
    fn file(&mut self, at: &Chain, name: &CStr, _listed: FileType) -> io::Result<()> {
        let path = || at.display(Some(name));
        let st = match rfs::statat(at.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()), // removed since it was listed
            Err(e) => return Err(at_path(e, "copying", &path())),
        };
        let dst = self.dst.fd();
        let copied = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => self.regular_file(at, name, &st),
            FileType::Symlink => match rfs::readlinkat(at.fd(), name, Vec::new()) {
                Ok(target) => rfs::symlinkat(target.as_c_str(), dst, name)
                    .map_err(io::Error::from)
                    .and_then(|()| copy_node_metadata(dst, name, &st, false))
                    .map(|()| true),
                // No longer a symlink.
                Err(Errno::NOENT | Errno::INVAL) => Ok(false),
                Err(e) => Err(e.into()),
            },
            // A directory where something else was listed: it is new,
            // and not walked.
            FileType::Directory => Ok(false),
            other => {
                // FIFOs, sockets, device nodes: recreate the node itself.
                let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
                rfs::mknodat(dst, name, other, mode, st.st_rdev as _)
                    .map_err(io::Error::from)
                    .and_then(|()| copy_node_metadata(dst, name, &st, true))
                    .map(|()| true)
            }
        };
        match copied.map_err(|e| at_path(e, "copying", &path()))? {
            true => Ok(()),
            false => {
                tracing::warn!(
                    path = %path(),
                    "left out of the copy: it changed while being copied, or something is \
                     mounted on it"
                );
                Ok(())
            }
        }
    }

    fn enter(&mut self, at: &Chain, name: &CStr, _dir: BorrowedFd<'_>) -> io::Result<()> {
        let d = self.make_dir(name).map_err(|e| at_path(e, "copying", &at.display(Some(name))))?;
        self.dst.push(name, d)
    }

    /// Times last: writing the entries changed them.
    fn leave(&mut self, _at: &Chain, _name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
        let (_, d) = self.dst.pop()?;
        copy_metadata(dir, d.as_fd())
    }

    /// The mountpoint is kept, as an empty directory: what is mounted
    /// there is not the volume's, and may be anything of the host's.
    fn mount(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
        let path = at.display(Some(name));
        tracing::warn!(%path, "not copying what is mounted inside a volume");
        let d = self.make_dir(name).map_err(|e| at_path(e, "copying", &path))?;
        copy_metadata(dir, d.as_fd())
    }
}

/// Owner, (mode) and times of a node that cannot be opened: a symlink
/// (whose mode means nothing) or a special file.
fn copy_node_metadata(dir: BorrowedFd<'_>, name: &CStr, st: &Stat, chmod: bool) -> io::Result<()> {
    let (uid, gid) = (rfs::Uid::from_raw(st.st_uid), rfs::Gid::from_raw(st.st_gid));
    rfs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
    if chmod {
        rfs::chmodat(dir, name, Mode::from_raw_mode(st.st_mode & 0o7777), AtFlags::empty())?;
    }
    rfs::utimensat(dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Reflink when the filesystem shares extents; otherwise copy only the
/// data segments so holes stay holes.
fn copy_file(src: &OwnedFd, dst: &OwnedFd, size: u64) -> io::Result<()> {
    if rfs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut pos = 0u64;
    while pos < size {
        let data = match rfs::seek(src, SeekFrom::Data(pos)) {
            Ok(off) => off,
            Err(Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = rfs::seek(src, SeekFrom::Hole(data))?;
        let mut off_in = data;
        let mut off_out = data;
        while off_in < hole {
            let len = (hole - off_in).min(1 << 30) as usize;
            let n = rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), len)?;
            if n == 0 {
                break;
            }
        }
        pos = hole;
    }
    rfs::ftruncate(dst, size)?;
    Ok(())
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: super::stat_nsec(st.st_atime_nsec),
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: super::stat_nsec(st.st_mtime_nsec),
        },
    }
}

/// Owner, mode, xattrs and times of an open file or directory, in that
/// order: chown clears set-id bits, and any write bumps the times.
fn copy_metadata(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let st = rfs::fstat(src)?;
    rfs::fchown(dst, Some(rfs::Uid::from_raw(st.st_uid)), Some(rfs::Gid::from_raw(st.st_gid)))?;
    rfs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    copy_xattrs(src, dst)?;
    rfs::futimens(dst, &times(&st))?;
    Ok(())
}

fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let len = match rfs::flistxattr_query(src) {
        Ok(0) | Err(Errno::NOTSUP) => return Ok(()),
        Ok(n) => n,
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; len];
    let len = rfs::flistxattr(src, &mut names[..])?;
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).map_err(io::Error::other)?;
        let size = rfs::fgetxattr_query(src, name.as_c_str())?;
        let mut value = vec![0u8; size];
        let size = rfs::fgetxattr(src, name.as_c_str(), &mut value[..])?;
        match rfs::fsetxattr(dst, name.as_c_str(), &value[..size], rfs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
    use std::path::Path;

    use super::super::testing::{Mounted, swap_for_fifo, swap_for_symlink, within};
    use super::*;

    const FILES: usize = 20;
    const DIRS: usize = 5;

    /// A volume `a` of files `f0…` and empty directories `d0…`, copied to
    /// `b` while, as soon as the first file is copied, every entry not yet
    /// copied is offered to `swap` (which says whether it swapped it), as
    /// a container can do while its volume is being copied. Returns the
    /// copy's result and the names swapped.
    fn copy_while_swapping(
        swap: impl Fn(&Path) -> bool + Send + 'static,
    ) -> (tempfile::TempDir, io::Result<()>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("vols")).unwrap();
        root.create_dir("a", None, None, 0o755).unwrap();
        root.create_dir("b", None, None, 0o755).unwrap();
        let (a, b) = (root.host_path("a"), root.host_path("b"));
        // Subdirectories named to come after the files: the walk visits
        // names in byte order, so they are still to copy when the swap runs.
        for i in 0..DIRS {
            std::fs::create_dir(a.join(format!("s{i}"))).unwrap();
        }
        for i in 0..FILES {
            std::fs::write(a.join(format!("f{i}")), format!("data {i}")).unwrap();
        }
        let (copied, swapped) = within(10, "a copy of a changing tree", move || {
            let mut swapped = Vec::new();
            let copied = copy(&root, "a", &root, "b", &mut |_| {
                if !swapped.is_empty() {
                    return;
                }
                for e in std::fs::read_dir(&a).unwrap() {
                    let name = e.unwrap().file_name().into_string().unwrap();
                    if b.join(&name).symlink_metadata().is_err() && swap(&a.join(&name)) {
                        swapped.push(name);
                    }
                }
            });
            (copied, swapped)
        });
        let files = swapped.iter().filter(|n| n.starts_with('f')).count();
        assert_eq!(files, FILES - 1, "every file but the first is swapped: {swapped:?}");
        (dir, copied, swapped)
    }

    /// Every entry of the copy: the data of those not swapped, and what
    /// `swapped` says of those that were.
    fn check_copy(dir: &Path, swapped: &[String], what: impl Fn(&Path) -> bool) {
        let b = dir.join("vols/b");
        for i in 0..FILES {
            let name = format!("f{i}");
            if swapped.contains(&name) {
                assert!(what(&b.join(&name)), "{name} is copied as what it became");
            } else {
                assert_eq!(std::fs::read(b.join(&name)).unwrap(), format!("data {i}").as_bytes());
            }
        }
    }

    #[test]
    fn a_copy_of_files_swapped_for_fifos_mid_copy_finishes_at_once() {
        let (dir, copied, swapped) = copy_while_swapping(|p| {
            let is_file = p.symlink_metadata().unwrap().is_file();
            if is_file {
                swap_for_fifo(p);
            }
            is_file
        });
        copied.unwrap();
        check_copy(dir.path(), &swapped, |p| p.symlink_metadata().unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_copy_of_files_and_directories_swapped_for_symlinks_never_follows_them() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"the host's").unwrap();
        std::fs::create_dir(outside.path().join("sub")).unwrap();
        std::fs::write(outside.path().join("sub/secret"), b"the host's").unwrap();
        let target = outside.path().to_path_buf();
        let (dir, copied, swapped) = copy_while_swapping(move |p| {
            let is_dir = p.symlink_metadata().unwrap().is_dir();
            swap_for_symlink(p, &if is_dir { target.join("sub") } else { target.join("secret") });
            true
        });
        copied.unwrap();
        assert!(swapped.iter().any(|n| n.starts_with('s')), "directories too: {swapped:?}");
        check_copy(dir.path(), &swapped, |p| p.symlink_metadata().unwrap().is_symlink());
        let b = dir.path().join("vols/b");
        for name in swapped.iter().filter(|n| n.starts_with('s')) {
            assert!(b.join(name).symlink_metadata().unwrap().is_symlink(), "{name}");
        }
        let mut found = vec![b.clone()];
        while let Some(d) = found.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let (path, ty) = (e.as_ref().unwrap().path(), e.unwrap().file_type().unwrap());
                assert!(
                    ty.is_symlink() || std::fs::read(&path).unwrap_or_default() != b"the host's"
                );
                if ty.is_dir() {
                    found.push(path);
                }
            }
        }
    }

    #[test]
    fn copy_keeps_links_modes_holes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("vols")).unwrap();
        root.create_dir("a", None, None, 0o755).unwrap();
        let a = root.path().join("a");
        std::fs::create_dir(a.join("d")).unwrap();
        std::fs::write(a.join("d/f"), b"hello").unwrap();
        std::fs::set_permissions(a.join("d/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::hard_link(a.join("d/f"), a.join("hard")).unwrap();
        symlink("d/f", a.join("sym")).unwrap();
        let sparse = std::fs::File::create(a.join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        drop(sparse);
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(a.join("d/f"))
            .unwrap()
            .set_modified(old)
            .unwrap();

        root.create_dir("b", None, None, 0o700).unwrap();
        let mut copied = 0;
        copy(&root, "a", &root, "b", &mut |n| copied += n).unwrap();
        assert!(copied >= 5, "progress is reported");
        let b = root.path().join("b");
        assert_eq!(std::fs::read(b.join("d/f")).unwrap(), b"hello");
        let f = std::fs::metadata(b.join("d/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o640);
        assert_eq!(f.mtime(), 1_000_000);
        assert_eq!(f.ino(), std::fs::metadata(b.join("hard")).unwrap().ino());
        assert_eq!(std::fs::read_link(b.join("sym")).unwrap(), Path::new("d/f"));
        let s = std::fs::metadata(b.join("sparse")).unwrap();
        assert_eq!(s.len(), 64 << 20);
        assert!(s.blocks() < 64, "holes stay holes: {} blocks", s.blocks());
        assert_eq!(std::fs::metadata(&b).unwrap().mode() & 0o7777, 0o755, "root mode copied");
    }

    #[test]
    fn a_copy_keeps_a_mountpoint_but_not_what_is_mounted_there() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("vols")).unwrap();
        root.create_dir("v", None, None, 0o755).unwrap();
        let v = root.host_path("v");
        std::fs::create_dir_all(v.join("sub/m")).unwrap();
        std::fs::write(v.join("sub/keep"), b"mine").unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret"), b"the host's").unwrap();
        let Some(_bound) = Mounted::bind(&host, &v.join("sub/m")) else { return };

        root.create_dir("w", None, None, 0o755).unwrap();
        copy(&root, "v", &root, "w", &mut |_| {}).unwrap();
        let w = root.host_path("w");
        assert_eq!(std::fs::read(w.join("sub/keep")).unwrap(), b"mine");
        assert!(w.join("sub/m").is_dir(), "the mountpoint is copied");
        assert_eq!(std::fs::read_dir(w.join("sub/m")).unwrap().count(), 0, "but empty");
        assert_eq!(std::fs::read(host.join("secret")).unwrap(), b"the host's");
    }
}
