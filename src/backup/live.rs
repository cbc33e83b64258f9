//! The backup's source when it reads the live volume instead of a
//! snapshot: the tree listed by descriptor (`tree::read`: nothing is
//! followed or opened on the way), each regular file read from the very
//! inode listed, and checked not to change while it is read.
//!
//! The rule, per file: its size, modification and change times when
//! listed, when opened and after its last byte was read must agree, the
//! bytes read must be its size, and its change time must be older than
//! [`RACY`] when it is opened (a write in the same clock tick would not
//! move it). A file that fails the rule is left out of the pass and named
//! in [`Changed`]; the caller reads those again in another pass. In the
//! last pass ([`Live::last`]) such a file is kept as read and named as
//! possibly torn.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine;
use rustic_core::jiff::Timestamp;
use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    ErrorKind, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
};
use rustix::fs::{self as rfs, FileType, Stat};

use super::progress::Bars;
use super::source::Errors;
use crate::tree::read::{self, Entry, Event, Kind};
use crate::tree::{stat_nsec, stat_size};

/// A change time this close to the moment a file is opened may hide a
/// write made after it in the same clock tick (file times come from a
/// coarse clock, whose tick is at most 10 ms): the file is read again.
pub(super) const RACY: Duration = Duration::from_millis(100);

/// How far the listing runs ahead of the readers: each entry on the way
/// holds a descriptor.
const AHEAD: usize = 64;

/// The paths that changed while being read, relative to the volume.
#[derive(Debug, Clone, Default)]
pub(super) struct Changed(Arc<Mutex<Vec<PathBuf>>>);

impl Changed {
    fn push(&self, p: PathBuf) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(p);
    }

    pub fn take(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The live tree below `dir` (shown as `base`): what one pass reads.
pub(super) struct Live {
    pub dir: OwnedFd,
    pub base: PathBuf,
    pub bars: Bars,
    pub errors: Errors,
    pub changed: Changed,
    /// The last pass: a file that changes while read is kept as read.
    pub last: bool,
}

impl ReadSource for Live {
    type Open = Open;
    type Iter = Iter;

    /// Unknown: listing the tree twice would cost what the backup saves.
    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Iter {
        let (tx, rx) = sync_channel(AHEAD);
        let iter = Iter { rx, bars: self.bars.clone() };
        let dir = match self.dir.try_clone() {
            Ok(dir) => dir,
            Err(e) => {
                self.errors.push(format!("reading {}: {e}", self.base.display()));
                return iter;
            }
        };
        let (base, last) = (self.base.clone(), self.last);
        let log = (self.errors.clone(), self.changed.clone());
        std::thread::spawn(move || {
            let mut gone = false;
            let listed = read::list_tree(&base, dir, &mut |ev| match ev {
                Event::Changed(p) => {
                    log.1.push(p);
                    Ok(())
                }
                Event::Entry(e) => {
                    let entry = to_entry(&base, e, &log, last);
                    // The backup stopped reading: so does the listing.
                    tx.send(entry).map_err(|_| {
                        gone = true;
                        io::Error::other("the backup ended")
                    })
                }
            });
            if let Err(e) = listed.map_err(|e| e.to_string())
                && !gone
            {
                log.0.push(e);
            }
        });
        iter
    }
}

pub(super) struct Iter {
    rx: Receiver<RusticResult<ReadSourceEntry<Open>>>,
    bars: Bars,
}

impl Iterator for Iter {
    type Item = RusticResult<ReadSourceEntry<Open>>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.rx.recv().ok()?;
        self.bars.file_done();
        Some(item)
    }
}

/// What the listing saw of a file: what it must still be when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    // Not `i64` on every target.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &Stat) -> Stamp {
        Stamp {
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, stat_nsec(st.st_mtime_nsec)),
            ctime: (st.st_ctime as i64, stat_nsec(st.st_ctime_nsec)),
        }
    }

    /// Whether the change time is within [`RACY`] of `opened`.
    fn racy(&self, opened: SystemTime) -> bool {
        let since = opened.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        // Before the epoch counts as the epoch, as for `since`.
        let secs = u64::try_from(self.ctime.0).unwrap_or(0);
        let nanos = u32::try_from(self.ctime.1.clamp(0, 999_999_999)).unwrap_or(0);
        let ctime = Duration::new(secs, nanos);
        ctime + RACY > since
    }
}

fn to_entry(
    base: &Path,
    e: Entry,
    log: &(Errors, Changed),
    last: bool,
) -> RusticResult<ReadSourceEntry<Open>> {
    let st = &e.stat;
    let dir = matches!(e.kind, Kind::Dir);
    let time = |s: i64, ns: i64| Timestamp::new(s, i32::try_from(ns).ok()?).ok();
    #[allow(clippy::unnecessary_cast)]
    let (mtime, ctime) = (
        time(st.st_mtime as i64, stat_nsec(st.st_mtime_nsec)),
        time(st.st_ctime as i64, stat_nsec(st.st_ctime_nsec)),
    );
    let hardlink = !dir && st.st_nlink > 1;
    let xattrs = match e.kind {
        Kind::Dir | Kind::File => xattrs(e.fd.as_fd()),
        _ => Vec::new(),
    };
    #[allow(clippy::unnecessary_cast)]
    let meta = Metadata {
        mode: Some(go_mode(st.st_mode as u32)),
        mtime,
        // What rustic and restic record by default: the access time is
        // not kept.
        atime: mtime,
        ctime,
        uid: Some(st.st_uid),
        gid: Some(st.st_gid),
        // Names are the host's, which mean nothing to a container; the
        // restore uses the numbers.
        user: None,
        group: None,
        inode: st.st_ino as u64,
        device_id: if hardlink { st.st_dev as u64 } else { 0 },
        size: if dir { 0 } else { stat_size(st) },
        links: if dir { 0 } else { st.st_nlink as u64 },
        extended_attributes: serde_json::from_value(serde_json::Value::Array(xattrs))
            .unwrap_or_default(),
    };
    #[allow(clippy::unnecessary_cast)]
    let rdev = st.st_rdev as u64;
    let node_type = match &e.kind {
        Kind::Dir => NodeType::Dir,
        Kind::File => NodeType::File,
        Kind::Symlink(target) => NodeType::from_link(target),
        Kind::Other => match FileType::from_raw_mode(st.st_mode) {
            FileType::Fifo => NodeType::Fifo,
            FileType::Socket => NodeType::Socket,
            FileType::CharacterDevice => NodeType::Chardev { device: rdev },
            _ => NodeType::Dev { device: rdev },
        },
    };
    let name = e.path.file_name().unwrap_or_default();
    let node = Node::new_node(name, node_type, meta);
    let open = matches!(e.kind, Kind::File).then(|| Open {
        fd: e.fd,
        path: e.path.clone(),
        listed: Stamp::of(st),
        changed: log.1.clone(),
        errors: log.0.clone(),
        last,
    });
    Ok(ReadSourceEntry { path: base.join(&e.path), node, open })
}

/// The extended attributes of the inode `fd` pins, as restic's JSON
/// has them; none when they cannot be read (as rustic does).
fn xattrs(fd: std::os::fd::BorrowedFd<'_>) -> Vec<serde_json::Value> {
    use std::os::fd::AsRawFd;
    // An O_PATH descriptor takes no f*xattr call; its magic link does.
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut small = [0u8; 1024];
    let mut big = Vec::new();
    let names: &[u8] = match rfs::listxattr(link.as_str(), &mut small[..]) {
        Ok(0) => return Vec::new(),
        Ok(n) => &small[..n],
        Err(rustix::io::Errno::RANGE) => {
            big.resize(1 << 16, 0);
            match rfs::listxattr(link.as_str(), &mut big[..]) {
                Ok(n) => &big[..n],
                Err(_) => return Vec::new(),
            }
        }
        Err(_) => return Vec::new(),
    };
    let mut value = vec![0u8; 1 << 16];
    names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|name| {
            let n = rfs::getxattr(link.as_str(), name, &mut value[..]).ok()?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&value[..n]);
            Some(serde_json::json!({ "name": String::from_utf8_lossy(name), "value": b64 }))
        })
        .collect()
}

/// Go's `fs.FileMode` bits for a Unix mode, as restic stores them.
fn go_mode(mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const FIFO: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHARDEV: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut go = mode & 0o777;
    go |= match FileType::from_raw_mode(mode) {
        FileType::Directory => DIR,
        FileType::Symlink => SYMLINK,
        FileType::BlockDevice => DEVICE,
        FileType::CharacterDevice => CHARDEV | DEVICE,
        FileType::Fifo => FIFO,
        FileType::Socket => SOCKET,
        _ => 0,
    };
    for (bit, go_bit) in [(0o4000, SETUID), (0o2000, SETGID), (0o1000, STICKY)] {
        if mode & bit != 0 {
            go |= go_bit;
        }
    }
    go
}

pub(super) struct Open {
    /// `O_PATH`, on the inode listed.
    fd: OwnedFd,
    path: PathBuf,
    listed: Stamp,
    changed: Changed,
    errors: Errors,
    last: bool,
}

impl Open {
    fn error(&self, what: &str, e: io::Error) -> Box<RusticError> {
        self.errors.push(format!("{what} {}: {e}", self.path.display()));
        RusticError::with_source(ErrorKind::InputOutput, "{what} {path}", e)
            .attach_context("what", what.to_string())
            .attach_context("path", self.path.display().to_string())
    }
}

impl ReadSourceOpen for Open {
    type Reader = Reader;

    fn open(self) -> RusticResult<Reader> {
        let opened = SystemTime::now();
        let (st, fd) = read::reopen_file(self.fd.as_fd())
            .and_then(|fd| Ok((rfs::fstat(&fd)?, fd)))
            .map_err(|e| self.error("opening", e))?;
        let now = Stamp::of(&st);
        let named = now != self.listed || now.racy(opened);
        if named {
            self.changed.push(self.path.clone());
            if !self.last {
                return Err(RusticError::new(
                    ErrorKind::InputOutput,
                    "{path} changed before being read",
                )
                .attach_context("path", self.path.display().to_string()));
            }
        }
        Ok(Reader { file: std::fs::File::from(fd), done: 0, open: self, opened, named })
    }
}

pub(super) struct Reader {
    file: std::fs::File,
    /// Bytes read so far.
    done: u64,
    open: Open,
    opened: SystemTime,
    /// Whether the file is named as changed already.
    named: bool,
}

impl Reader {
    /// At the end: whether the file is still what was listed.
    fn unchanged(&self) -> io::Result<bool> {
        let now = Stamp::of(&rfs::fstat(&self.file)?);
        Ok(now == self.open.listed
            && u64::try_from(self.open.listed.size) == Ok(self.done)
            && !now.racy(self.opened))
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.open.errors.push(format!("reading {}: {e}", self.open.path.display()));
            }
        })?;
        self.done += n as u64;
        if n > 0 || buf.is_empty() || self.unchanged()? {
            return Ok(n);
        }
        if !self.named {
            self.named = true;
            self.open.changed.push(self.open.path.clone());
        }
        if self.open.last {
            return Ok(0);
        }
        Err(io::Error::other(format!("{} changed while being read", self.open.path.display())))
    }
}
