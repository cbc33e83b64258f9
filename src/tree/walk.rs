//! The one tree walk behind removal, disk usage, copies and live reads.
//!
//! A volume's content is written by containers, so its depth is theirs to
//! choose: 100,000 nested directories are a few megabytes. The walk is
//! therefore iterative (its stack lives on the heap) and does not keep a
//! file descriptor per level, which would run out of descriptors long
//! before such a tree ends. Only the deepest [`WINDOW`] levels stay open;
//! a shallower one is reached again through `..` of its child, and only
//! if it is still the very directory (device and inode) that was
//! descended from. If it is not, the tree was moved while being walked,
//! and the walk stops rather than carry on somewhere else.
//!
//! No path is ever resolved from `/`: every step is relative to an open
//! directory, symlinks are never followed, and a mount is never entered.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, ResolveFlags};

use super::{DIR_FLAGS, entries, mount_id, open_child_dir};

/// How many levels of a walk stay open. A copy walks two trees, so this
/// bounds it to about twice as many descriptors, which leaves room under
/// the usual limit of 1,024 for many walks at once.
pub(super) const WINDOW: usize = 32;

/// Longest directory path (relative to a walk's start) a system call is
/// handed, leaving room for one more component under `PATH_MAX` (4,096).
const SHORT_PATH: usize = 3_800;

/// A directory's identity: (device, inode).
pub(super) type Id = (u64, u64);

pub(super) fn id_of(fd: BorrowedFd<'_>) -> io::Result<Id> {
    Ok(stat_id(&rfs::fstat(fd)?))
}

// Not `u64` on every target.
#[allow(clippy::unnecessary_cast)]
pub(super) fn stat_id(st: &rfs::Stat) -> Id {
    (st.st_dev as u64, st.st_ino as u64)
}

/// An error with the path it happened at.
pub(super) fn at_path(e: impl Into<io::Error>, what: &str, path: &str) -> io::Error {
    let e = e.into();
    io::Error::new(e.kind(), format!("{what} {path}: {e}"))
}

struct Level {
    /// Open only for the deepest `WINDOW` levels.
    fd: Option<OwnedFd>,
    id: Id,
    /// The name in the parent (empty for the start).
    name: CString,
    /// Bytes of the path from the start down to here.
    path_len: usize,
}

/// The directories from a walk's start down to where it is now.
pub(super) struct Chain {
    base: PathBuf,
    levels: Vec<Level>,
}

impl Chain {
    /// A chain standing at `start`, which `base` names in messages.
    pub(super) fn new(base: &Path, start: OwnedFd) -> io::Result<Chain> {
        let id = id_of(start.as_fd())?;
        let top = Level { fd: Some(start), id, name: CString::default(), path_len: 0 };
        Ok(Chain { base: base.to_path_buf(), levels: vec![top] })
    }

    /// The directory the chain stands in (always open).
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        match self.levels.last().and_then(|l| l.fd.as_ref()) {
            Some(fd) => fd.as_fd(),
            None => unreachable!("the deepest level of a chain is always open"),
        }
    }

    /// The identity of the directory the chain stands in.
    pub(super) fn id(&self) -> Id {
        self.levels[self.levels.len() - 1].id
    }

    /// Steps down into `name`, open as `fd`.
    pub(super) fn push(&mut self, name: &CStr, fd: OwnedFd) -> io::Result<()> {
        let id = id_of(fd.as_fd())?;
        let path_len = self.levels[self.levels.len() - 1].path_len + 1 + name.to_bytes().len();
        self.levels.push(Level { fd: Some(fd), id, name: name.to_owned(), path_len });
        // The open levels are the deepest ones, so closing the one that
        // just left the window keeps at most `WINDOW` open.
        if self.levels.len() > WINDOW {
            let i = self.levels.len() - 1 - WINDOW;
            self.levels[i].fd = None;
        }
        Ok(())
    }

    /// Steps back up; returns the name and descriptor of the directory
    /// left. The parent is reopened through `..` when it was closed, and
    /// must be the directory descended from.
    pub(super) fn pop(&mut self) -> io::Result<(CString, OwnedFd)> {
        if self.levels.len() < 2 {
            return Err(io::Error::other("tree walk: stepping up from its start"));
        }
        let Some(Level { fd: Some(child), name, .. }) = self.levels.pop() else {
            unreachable!("the deepest level of a chain is always open")
        };
        let last = self.levels.len() - 1;
        if self.levels[last].fd.is_none() {
            let flags = ResolveFlags::NO_XDEV
                .union(ResolveFlags::NO_SYMLINKS)
                .union(ResolveFlags::NO_MAGICLINKS);
            let up = rfs::openat2(&child, "..", DIR_FLAGS, Mode::empty(), flags)
                .map_err(|e| at_path(e, "reopening", &self.display(None)))?;
            if id_of(up.as_fd())? != self.levels[last].id {
                return Err(io::Error::other(format!(
                    "{} was moved while being walked; stopping there",
                    self.display(Some(&name))
                )));
            }
            self.levels[last].fd = Some(up);
        }
        Ok((name, child))
    }

    /// The open directory `id`, if it is one of the chain's open levels.
    pub(super) fn open_level(&self, id: Id) -> Option<BorrowedFd<'_>> {
        // The open levels are the deepest ones: stop at the first closed.
        let mut open = self.levels.iter().rev().map_while(|l| Some((l.id, l.fd.as_ref()?)));
        open.find(|(i, _)| *i == id).map(|(_, fd)| fd.as_fd())
    }

    /// The path of the current directory relative to the start (`.` for
    /// the start), unless it is too long to hand to a system call.
    pub(super) fn short_path(&self) -> Option<PathBuf> {
        if self.levels[self.levels.len() - 1].path_len > SHORT_PATH {
            return None;
        }
        let mut path = PathBuf::from(".");
        for level in &self.levels[1..] {
            path.push(level.name.to_string_lossy().as_ref());
        }
        Some(path)
    }

    /// For messages: the path of `name` in the current directory (or of
    /// the current directory), with the middle of a deep one elided so
    /// that naming an entry costs the same at any depth.
    pub(super) fn display(&self, name: Option<&CStr>) -> String {
        const HEAD: usize = 4;
        const TAIL: usize = 6;
        let names = &self.levels[1..];
        let mut out = self.base.display().to_string();
        let mut push = |n: &CStr| {
            out.push('/');
            out.push_str(&n.to_string_lossy());
        };
        if names.len() <= HEAD + TAIL {
            names.iter().for_each(|l| push(&l.name));
        } else {
            names[..HEAD].iter().for_each(|l| push(&l.name));
            let hidden = names.len() - HEAD - TAIL;
            push(&CString::new(format!("…{hidden} more levels…")).unwrap_or_default());
            names[names.len() - TAIL..].iter().for_each(|l| push(&l.name));
        }
        if let Some(n) = name {
            push(n);
        }
        out
    }
}

/// What a walk does at each entry. `at` stands in the directory holding
/// the entry `name`.
pub(super) trait Visit {
    /// Anything but a directory, of the type listed (`Unknown` for an
    /// entry listed as a directory that no longer is one). What is there
    /// now may have changed since, or be gone.
    fn file(&mut self, at: &Chain, name: &CStr, ty: FileType) -> io::Result<()>;
    /// A directory (open as `dir`) that is about to be walked.
    fn enter(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()>;
    /// A directory whose entries have all been visited.
    fn leave(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()>;
    /// A directory with another filesystem mounted on it (`dir` is that
    /// filesystem's root); it is never walked.
    fn mount(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()>;
}

/// Walks the tree below `start` (named `base` in messages), parents
/// entered before their entries and left after them.
pub(super) fn walk(base: &Path, start: OwnedFd, visit: &mut dyn Visit) -> io::Result<()> {
    let mnt = mount_id(start.as_fd())?;
    let mut chain = Chain::new(base, start)?;
    // Per level, the entries still to visit: the walk's whole memory, in
    // proportion to the entries listed, never to depth × depth.
    let mut todo = vec![listing(&chain)?];
    while let Some(list) = todo.last_mut() {
        match list.pop() {
            Some((name, FileType::Directory)) => {
                let dir = match open_child_dir(chain.fd(), &name) {
                    Ok(dir) => dir,
                    // No longer a directory since it was listed: a
                    // container swapped it (for a symlink, say) or
                    // removed it. Visited as what it is now, if anything.
                    Err(e) if gone_or_swapped(&e) => {
                        visit.file(&chain, &name, FileType::Unknown)?;
                        continue;
                    }
                    Err(e) => return Err(at_path(e, "opening", &chain.display(Some(&name)))),
                };
                if mount_id(dir.as_fd())? != mnt {
                    visit.mount(&chain, &name, dir.as_fd())?;
                    continue;
                }
                visit.enter(&chain, &name, dir.as_fd())?;
                chain.push(&name, dir)?;
                todo.push(listing(&chain)?);
            }
            Some((name, ty)) => visit.file(&chain, &name, ty)?,
            None => {
                todo.pop();
                if todo.is_empty() {
                    break;
                }
                let (name, dir) = chain.pop()?;
                visit.leave(&chain, &name, dir.as_fd())?;
            }
        }
    }
    Ok(())
}

fn gone_or_swapped(e: &io::Error) -> bool {
    let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
    matches!(
        errno,
        Some(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP)
    )
}

/// The current directory's entries, in the order `pop` should visit them:
/// sorted by name (byte order), as a backup's trees list them.
fn listing(chain: &Chain) -> io::Result<Vec<(CString, FileType)>> {
    let mut list = entries(chain.fd()).map_err(|e| at_path(e, "listing", &chain.display(None)))?;
    list.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Remover, Root, copy};
    use super::*;

    /// Deeper than paths can name, than a thread's stack allows when
    /// recursing per level, and than the descriptors a walk may hold.
    const DEEP: usize = 12_000;

    #[test]
    fn trees_deeper_than_any_path_are_measured_copied_and_removed() {
        let dir = Scratch::new();
        let root = Root::open(&dir.path().join("vols")).unwrap();
        root.create_dir("v", None, None, 0o755).unwrap();
        // A file with a link beside it at the bottom, and one linked from
        // half-way down (too deep for the first copy to be named by path).
        let mid = make_deep(open_path(&root.host_path("v")), DEEP / 2);
        write_at(&mid, c"h", b"half-way");
        let bottom = make_deep(&mid, DEEP / 2);
        let data = vec![7u8; 1 << 20];
        write_at(&bottom, c"f", &data);
        rfs::linkat(&bottom, c"f", &bottom, c"g", rfs::AtFlags::empty()).unwrap();
        rfs::linkat(&mid, c"h", &bottom, c"h", rfs::AtFlags::empty()).unwrap();
        drop((mid, bottom));

        on_small_stack(move || {
            assert!(root.usage("v").unwrap() >= 1 << 20, "the bottom file is counted");

            root.create_dir("w", None, None, 0o755).unwrap();
            let mut copied = 0;
            copy(&root, "v", &root, "w", &mut |n| copied += n).unwrap();
            let (depth, bottom) = measure_deep(&root.host_path("w"));
            assert_eq!(depth, DEEP);
            assert_eq!(read_at(&bottom, c"f"), data);
            assert_eq!(read_at(&bottom, c"h"), b"half-way");
            let ino = |n: &CStr| rfs::statat(&bottom, n, rfs::AtFlags::empty()).unwrap().st_ino;
            assert_eq!(ino(c"f"), ino(c"g"), "links in one directory stay links");
            assert!(copied >= 1 << 20);
            drop(bottom);

            for key in ["v", "w"] {
                root.remove(key).unwrap();
                assert!(!root.exists(key).unwrap());
            }
        });
    }

    #[test]
    fn wide_directories_are_measured_copied_and_removed() {
        const WIDE: usize = 20_000;
        let dir = Scratch::new();
        let root = Root::open(&dir.path().join("vols")).unwrap();
        root.create_dir("v", None, None, 0o755).unwrap();
        let v = open_path(&root.host_path("v"));
        for i in 0..WIDE {
            write_at(&v, &CString::new(format!("f{i}")).unwrap(), b"x");
        }
        assert!(root.usage("v").unwrap() > 0);
        root.create_dir("w", None, None, 0o755).unwrap();
        copy(&root, "v", &root, "w", &mut |_| {}).unwrap();
        assert_eq!(std::fs::read_dir(root.host_path("w")).unwrap().count(), WIDE);
        assert_eq!(std::fs::read(root.host_path("w").join("f19999")).unwrap(), b"x");
        root.remove("v").unwrap();
        root.remove("w").unwrap();
        assert!(root.keys().unwrap().is_empty());
    }

    #[test]
    fn a_walk_keeps_only_a_window_of_levels_open() {
        let dir = Scratch::new();
        let start = open_path(dir.path());
        let start_id = id_of(start.as_fd()).unwrap();
        let mut chain = Chain::new(dir.path(), start).unwrap();
        for _ in 0..200 {
            rfs::mkdirat(chain.fd(), LEVEL, Mode::from_raw_mode(0o755)).unwrap();
            let next = open_child_dir(chain.fd(), LEVEL).unwrap();
            chain.push(LEVEL, next).unwrap();
            let open = chain.levels.iter().filter(|l| l.fd.is_some()).count();
            assert!(open <= WINDOW, "{open} levels open");
        }
        for _ in 0..200 {
            chain.pop().unwrap();
        }
        assert_eq!(id_of(chain.fd()).unwrap(), start_id, "back where it started");
    }

    /// Removes a tree, moving part of it elsewhere on its way back up, as
    /// a container could do while its volume is being deleted.
    struct MovesMidWalk {
        from: PathBuf,
        to: PathBuf,
    }

    impl Visit for MovesMidWalk {
        fn file(&mut self, at: &Chain, name: &CStr, ty: FileType) -> io::Result<()> {
            Remover.file(at, name, ty)
        }
        fn enter(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
            Remover.enter(at, name, dir)
        }
        fn leave(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
            if self.from.exists() {
                std::fs::rename(&self.from, &self.to).unwrap();
            }
            Remover.leave(at, name, dir)
        }
        fn mount(&mut self, at: &Chain, name: &CStr, dir: BorrowedFd<'_>) -> io::Result<()> {
            Remover.mount(at, name, dir)
        }
    }

    #[test]
    fn a_tree_moved_during_a_walk_stops_it_there() {
        let dir = Scratch::new();
        let top = dir.path().join("top");
        std::fs::create_dir(&top).unwrap();
        drop(make_deep(open_path(&top), 100));
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep"), b"precious").unwrap();
        // Level 5, long closed when the walk comes back up to it.
        let from = (0..5).fold(top.clone(), |p, _| p.join("d"));
        let mut visit = MovesMidWalk { from, to: elsewhere.join("d") };

        let err = walk(&top, open_path(&top), &mut visit).unwrap_err().to_string();
        assert!(err.contains("was moved"), "{err}");
        let moved = top.join("d/d/d/d/d");
        assert!(err.starts_with(&format!("{} was moved", moved.display())), "{err}");
        assert!(elsewhere.join("d").is_dir(), "nothing outside the tree is removed");
        assert_eq!(std::fs::read(elsewhere.join("keep")).unwrap(), b"precious");
    }
}
