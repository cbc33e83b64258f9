//! A live tree listed entry by entry, for a backup that reads a volume in
//! place instead of a copy of it.
//!
//! Every entry comes with its metadata read from a descriptor that pins
//! the very inode described: a directory's own, or an `O_PATH` one,
//! opened relative to its parent with `O_NOFOLLOW`, for anything else. An
//! `O_PATH` descriptor opens nothing: a FIFO or a device node planted in
//! the volume is described, never opened. A regular file is opened for
//! reading only by [`reopen_file`], once its reader decides to read it,
//! and it is then the inode that was described, whatever was renamed over
//! its name since.
//!
//! Entries come sorted by name, each directory before its entries (the
//! order of restic's trees). A mount inside the tree is listed as an empty
//! directory, as copies keep it. An entry that is gone when opened is left
//! out; one that turned into a directory after its parent was listed is
//! reported as changed, for the caller to list again.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::walk::{Chain, Visit, at_path, walk};

/// What an entry is.
#[derive(Debug)]
pub enum Kind {
    Dir,
    File,
    /// A symlink and its target.
    Symlink(PathBuf),
    /// A FIFO, socket or device node.
    Other,
}

/// One entry of a live tree.
#[derive(Debug)]
pub struct Entry {
    /// Relative to the tree's start.
    pub path: PathBuf,
    pub kind: Kind,
    pub stat: Stat,
    /// A directory's descriptor (open for reading), else an `O_PATH` one.
    pub fd: OwnedFd,
}

/// What [`list_tree`] hands over, in order.
#[derive(Debug)]
pub enum Event {
    Entry(Entry),
    /// An entry whose type changed between its parent's listing and its
    /// opening (a file replaced by a directory): left out this time.
    Changed(PathBuf),
}

/// Lists the tree below `start` (named `base` in messages), handing each
/// entry to `each`; an error from `each` ends the listing with it.
pub fn list_tree(
    base: &Path,
    start: OwnedFd,
    each: &mut dyn FnMut(Event) -> io::Result<()>,
) -> io::Result<()> {
    walk(base, start, &mut Lister { rel: PathBuf::new(), each })
}

/// Opens the regular file an `O_PATH` descriptor pins, for reading,
/// without blocking (no FIFO or lease can hold the reader up).
pub fn reopen_file(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    if FileType::from_raw_mode(rfs::fstat(fd)?.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    // The magic link leads to the pinned inode itself, never to whatever
    // now has its name.
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    Ok(rfs::open(link.as_str(), flags, Mode::empty())?)
}

struct Lister<'a> {
    /// The current directory, relative to the start.
    rel: PathBuf,
    each: &'a mut dyn FnMut(Event) -> io::Result<()>,
}

fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

impl Visit for Lister<'_> {
    fn file(&mut self, at: &Chain, name: &CStr, _ty: FileType) -> io::Result<()> {
        let path = self.rel.join(os(name));
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(at.fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            // Deleted since the listing: not in the tree any more.
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(at_path(e, "opening", &at.display(Some(name)))),
        };
        let stat = rfs::fstat(&fd).map_err(|e| at_path(e, "reading", &at.display(Some(name))))?;
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => return (self.each)(Event::Changed(path)),
            FileType::RegularFile => Kind::File,
            FileType::Symlink => {
                // The link the descriptor pins, not what has its name now.
                let target = rfs::readlinkat(&fd, c"", Vec::new())
                    .map_err(|e| at_path(e, "reading", &at.display(Some(name))))?;
                Kind::Symlink(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
            }
            _ => Kind::Other,
        };
        (self.each)(Event::Entry(Entry { path, kind, stat, fd }))
    }

    fn enter(&mut self, _at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
        self.dir_entry(name, dir)?;
        self.rel.push(os(name));
        Ok(())
    }

    fn leave(&mut self, _at: &Chain, _name: &CStr, _dir: BorrowedFd<'_>) -> io::Result<()> {
        self.rel.pop();
        Ok(())
    }

    /// Listed, empty: what is mounted there is not the volume's.
    fn mount(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
        tracing::warn!(path = %at.display(Some(name)), "not reading what is mounted inside a volume");
        self.dir_entry(name, dir)
    }
}

impl Lister<'_> {
    fn dir_entry(&mut self, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
        let stat = rfs::fstat(dir)?;
        let fd = dir.try_clone_to_owned()?;
        let path = self.rel.join(os(name));
        (self.each)(Event::Entry(Entry { path, kind: Kind::Dir, stat, fd }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::testing::{Scratch, open_path};
    use std::os::fd::AsFd;

    fn listed(dir: &Path) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        list_tree(dir, open_path(dir), &mut |ev| {
            match ev {
                Event::Entry(e) => out.push((
                    e.path.display().to_string(),
                    match e.kind {
                        Kind::Dir => "dir",
                        Kind::File => "file",
                        Kind::Symlink(_) => "symlink",
                        Kind::Other => "other",
                    },
                )),
                Event::Changed(p) => out.push((p.display().to_string(), "changed")),
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn entries_come_sorted_each_directory_before_its_own() {
        let dir = Scratch::new();
        let d = dir.path();
        for sub in ["b", "a", "a/z", "a/c"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("c"), b"x").unwrap();
        std::fs::write(d.join("a/b"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("a/l")).unwrap();
        rfs::mknodat(rfs::CWD, d.join("ab"), FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .unwrap();
        let got = listed(d);
        let want = [
            ("a", "dir"),
            ("a/b", "file"),
            ("a/c", "dir"),
            ("a/l", "symlink"),
            ("a/z", "dir"),
            ("ab", "other"),
            ("b", "dir"),
            ("c", "file"),
        ];
        let want: Vec<_> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(got, want);
    }

    /// The descriptors the listing pins, in its order.
    fn pinned(dir: &Path) -> Vec<OwnedFd> {
        let mut fds = Vec::new();
        list_tree(dir, open_path(dir), &mut |ev| {
            if let Event::Entry(e) = ev {
                fds.push(e.fd);
            }
            Ok(())
        })
        .unwrap();
        fds
    }

    #[test]
    fn a_fifo_is_described_and_never_opened_for_reading() {
        let dir = Scratch::new();
        let fifo = dir.path().join("pipe");
        rfs::mknodat(rfs::CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let fds = pinned(dir.path());
        // Opening a FIFO for reading without O_NONBLOCK would hang here.
        let err = reopen_file(fds[0].as_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn a_reopened_file_is_the_one_listed_even_when_another_took_its_name() {
        let dir = Scratch::new();
        let path = dir.path().join("f");
        std::fs::write(&path, b"listed").unwrap();
        let fds = pinned(dir.path());
        std::fs::write(dir.path().join("new"), b"renamed over").unwrap();
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        let fd = reopen_file(fds[0].as_fd()).unwrap();
        let mut buf = [0u8; 32];
        let n = rustix::io::read(&fd, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"listed");
    }
}
