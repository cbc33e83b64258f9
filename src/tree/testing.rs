//! Test helpers: trees too deep to reach by path, and mounts that are
//! undone even when a test fails.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::mount::{self as rmnt, MountFlags, UnmountFlags};

/// Each level of a deep tree is a directory of this name.
pub const LEVEL: &CStr = c"d";

fn open_dir(parent: impl AsFd, name: &CStr) -> OwnedFd {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
    rfs::openat(parent, name, flags, Mode::empty()).unwrap()
}

pub fn open_path(path: &Path) -> OwnedFd {
    rfs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap()
}

/// Makes `depth` nested directories below `top`, one at a time by
/// descriptor (their paths are far beyond `PATH_MAX`), and returns the
/// deepest one.
pub fn make_deep(top: impl AsFd, depth: usize) -> OwnedFd {
    let mut dir =
        rfs::openat(top, c".", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..depth {
        rfs::mkdirat(&dir, LEVEL, Mode::from_raw_mode(0o755)).unwrap();
        dir = open_dir(&dir, LEVEL);
    }
    dir
}

/// How many levels of [`LEVEL`] there are below `top`, and the deepest.
pub fn measure_deep(top: &Path) -> (usize, OwnedFd) {
    let mut dir = open_path(top);
    let mut depth = 0;
    loop {
        match rfs::openat(&dir, LEVEL, OFlags::DIRECTORY | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(next) => dir = next,
            Err(rustix::io::Errno::NOENT) => return (depth, dir),
            Err(e) => panic!("level {depth}: {e}"),
        }
        depth += 1;
    }
}

pub fn write_at(dir: impl AsFd, name: &CStr, data: &[u8]) {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::from_raw_mode(0o644)).unwrap();
    rustix::io::write(&fd, data).unwrap();
}

pub fn read_at(dir: impl AsFd, name: &CStr) -> Vec<u8> {
    let fd = rfs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out).unwrap();
    out
}

/// Runs `f` on a thread whose stack is far too small for a walk that
/// recurses once per level of a deep tree.
pub fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap().join().unwrap();
}

/// A mount, undone (lazily, so a test's open descriptors cannot block
/// it) when dropped, whether or not the test passed.
pub struct Mounted(PathBuf);

impl Mounted {
    /// Binds `src` on `target`; `None` (after saying why) when not root,
    /// which CI=true turns into a failure.
    pub fn bind(src: &Path, target: &Path) -> Option<Mounted> {
        root_or_skip()?;
        rmnt::mount_bind(src, target).unwrap();
        Some(Mounted(target.to_path_buf()))
    }

    /// A tmpfs of `size` bytes on `target`.
    pub fn tmpfs(target: &Path, size: u64) -> Option<Mounted> {
        root_or_skip()?;
        let opts = std::ffi::CString::new(format!("size={size}")).unwrap();
        rmnt::mount("tmpfs", target, "tmpfs", MountFlags::empty(), Some(opts.as_c_str())).unwrap();
        Some(Mounted(target.to_path_buf()))
    }

    /// Follows the mountpoint to where it was renamed.
    pub fn moved_to(&mut self, path: PathBuf) {
        self.0 = path;
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = rmnt::unmount(&self.0, UnmountFlags::DETACH) {
            eprintln!("unmounting {}: {e}", self.0.display());
        }
    }
}

fn root_or_skip() -> Option<()> {
    if rustix::process::geteuid().is_root() {
        return Some(());
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "CI=true and this test needs root to mount");
    eprintln!("SKIPPED: this test needs root to mount");
    None
}

/// A scratch directory for tests that make many entries: a tmpfs when
/// root (entries are made many times faster than on a disk that others
/// are using), else a plain temporary directory.
pub struct Scratch {
    // Unmounted before the directory goes.
    _mount: Option<Mounted>,
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let mount = rustix::process::geteuid().is_root().then(|| {
            let opts = c"size=512m";
            rmnt::mount("tmpfs", dir.path(), "tmpfs", MountFlags::empty(), Some(opts)).unwrap();
            Mounted(dir.path().to_path_buf())
        });
        Scratch { _mount: mount, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs `f` on its own thread and returns what it returns, failing the
/// test if it takes longer than `secs` seconds: a call that waits forever
/// (on a FIFO, say) fails instead of hanging the test run.
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not return within {secs} s"),
    }
}

/// Replaces the file or empty directory at `path` with a FIFO.
pub fn swap_for_fifo(path: &Path) {
    remove(path);
    rfs::mknodat(rfs::CWD, path, rfs::FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
}

/// Replaces the file or empty directory at `path` with a symlink to
/// `target`.
pub fn swap_for_symlink(path: &Path, target: &Path) {
    remove(path);
    std::os::unix::fs::symlink(target, path).unwrap();
}

fn remove(path: &Path) {
    if path.symlink_metadata().unwrap().is_dir() {
        std::fs::remove_dir(path).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
}
