//! Copies that keep everything a file has: type, mode, owner, times,
//! xattrs, symlinks, hard links and holes; data is reflinked where the
//! filesystem shares extents.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps,
};
use rustix::io::Errno;

use super::{BENEATH, Root, check_key, entries, open_child_dir};

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
    let mut copier = Copier { dst_root: d.as_fd(), links: HashMap::new(), on_bytes };
    copier.dir(s.as_fd(), d.as_fd(), Path::new(""))?;
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
    let s = rfs::openat2(
        &src.fd,
        src_key,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        BENEATH,
    )?;
    let size = rfs::fstat(&s)?.st_size as u64;
    let d = dst.create_file(dst_key, 0)?;
    copy_file(&s, &d, size)?;
    rfs::fsync(&d)?;
    Ok(())
}

struct Copier<'a> {
    dst_root: BorrowedFd<'a>,
    /// Hard links seen so far: (dev, ino) of the source → path below the
    /// destination root of the first copy.
    links: HashMap<(u64, u64), PathBuf>,
    on_bytes: &'a mut dyn FnMut(u64),
}

impl Copier<'_> {
    fn dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &Path) -> io::Result<()> {
        for (name, ty) in entries(src)? {
            let st = rfs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW)?;
            let rel_child = rel.join(name.to_string_lossy().as_ref());
            match ty {
                FileType::Directory => {
                    rfs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))?;
                    let s = open_child_dir(src, &name)?;
                    let d = open_child_dir(dst, &name)?;
                    self.dir(s.as_fd(), d.as_fd(), &rel_child)?;
                    copy_metadata(s.as_fd(), d.as_fd())?;
                }
                FileType::RegularFile => {
                    let key = (st.st_dev as u64, st.st_ino as u64);
                    if st.st_nlink > 1 {
                        if let Some(first) = self.links.get(&key) {
                            rfs::linkat(
                                self.dst_root,
                                first.as_path(),
                                dst,
                                &name,
                                AtFlags::empty(),
                            )?;
                            continue;
                        }
                        self.links.insert(key, rel_child.clone());
                    }
                    let s = rfs::openat(
                        src,
                        &name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    let d = rfs::openat(
                        dst,
                        &name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )?;
                    copy_file(&s, &d, st.st_size as u64)?;
                    copy_metadata(s.as_fd(), d.as_fd())?;
                    (self.on_bytes)(st.st_size as u64);
                }
                FileType::Symlink => {
                    let target = rfs::readlinkat(src, &name, Vec::new())?;
                    rfs::symlinkat(target.as_c_str(), dst, &name)?;
                    copy_node_metadata(dst, &name, &st, false)?;
                }
                other => {
                    // FIFOs, sockets, device nodes: recreate the node itself.
                    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
                    rfs::mknodat(dst, &name, other, mode, st.st_rdev as _)?;
                    copy_node_metadata(dst, &name, &st, true)?;
                }
            }
        }
        Ok(())
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
        last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
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
