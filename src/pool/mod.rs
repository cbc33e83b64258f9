//! Storage pools. A pool is a named place where volumes live; its backend
//! is one implementation of [`Backend`], each in its own file.
//!
//! Backends are synchronous: they do filesystem work and are called from
//! blocking threads by the core, never on the async workers.

mod btrfs;
mod dir;
mod host;
mod kind;
mod loopback;

use std::fmt::Debug;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use btrfs::BtrfsBackend;
pub use dir::DirBackend;
pub use host::HostDir;
pub use kind::{BackendKind, DEFAULT_LOOP_SIZE, FsKind, PoolConfig, Scope};
pub use loopback::LoopBackend;

/// What a new volume's storage must look like.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub size: Option<u64>,
    pub fs: Option<FsKind>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// Told how many more bytes a long operation has copied.
pub type OnBytes<'a> = &'a mut dyn FnMut(u64);

/// Writes a tree into the empty directory it is given (a restore from a
/// backup).
pub type Fill<'a> = &'a mut dyn FnMut(&Path) -> io::Result<()>;

/// Asked right before a revert swaps new content in, when nothing is
/// visible yet: an error stops the revert there (the caller may have
/// lost the right to write the volume while the copy ran).
pub type Gate<'a> = &'a dyn Fn() -> io::Result<()>;

/// A snapshot opened for reading as a directory tree. What opening it
/// took (a read-only mount of a loop image) is undone when it is dropped.
pub struct SnapshotView {
    path: PathBuf,
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl SnapshotView {
    /// A view of a tree that needs no undoing.
    pub fn at(path: PathBuf) -> Self {
        SnapshotView { path, release: None }
    }

    /// A view that runs `release` when dropped.
    pub fn with_release(path: PathBuf, release: impl FnOnce() + Send + 'static) -> Self {
        SnapshotView { path, release: Some(Box::new(release)) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SnapshotView {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// One storage backend. `key` is the volume's storage key and `snap` a
/// snapshot's (both derived from ids, never from user input).
pub trait Backend: Send + Sync + Debug {
    fn kind(&self) -> BackendKind;
    /// Whether `size` limits are enforced by this backend.
    fn enforces_size(&self) -> bool;
    /// Whether snapshots and copies share data with their source instead
    /// of copying it (btrfs subvolumes; reflinks where the filesystem
    /// has them).
    fn copies_share_data(&self) -> bool {
        false
    }
    /// Creates empty storage for a volume.
    fn create(&self, key: &str, spec: &Spec) -> io::Result<()>;
    /// Copies the content of volume `src` into the new volume `dst`.
    fn copy(&self, src: &str, dst: &str, on_bytes: OnBytes<'_>) -> io::Result<()>;
    /// Makes the volume usable on this host and returns its mountpoint.
    fn activate(&self, key: &str) -> io::Result<PathBuf>;
    /// Undoes `activate`; the data stays.
    fn deactivate(&self, key: &str) -> io::Result<()>;
    /// Destroys the volume's storage. Missing storage is not an error.
    fn destroy(&self, key: &str) -> io::Result<()>;
    /// Where Docker finds the volume's files once active.
    fn mountpoint(&self, key: &str) -> PathBuf;
    /// The active volume's root directory, opened from the pool's (or the
    /// host-path root's) descriptor without following symlinks: what an
    /// exposed mountpoint binds, so that it is this directory whatever
    /// was planted on the way to it.
    fn open_volume(&self, key: &str) -> io::Result<OwnedFd>;
    /// Bytes the volume uses.
    fn usage(&self, key: &str) -> io::Result<u64>;
    /// Whether the volume has storage (false after a purge or deallocate).
    fn exists(&self, key: &str) -> io::Result<bool>;

    /// Takes a point-in-time copy of the volume as snapshot `snap`. The
    /// snapshot appears whole or not at all.
    fn snapshot(&self, key: &str, snap: &str, on_bytes: OnBytes<'_>) -> io::Result<()>;
    /// Fills the new, empty volume `key` with the snapshot's content.
    fn copy_snapshot(&self, snap: &str, key: &str, on_bytes: OnBytes<'_>) -> io::Result<()>;
    /// Replaces the volume's content with the snapshot's; whoever opens
    /// the volume afterwards sees the old content or the snapshot's,
    /// never a mix.
    /// `may_swap` is asked right before the swap; its error leaves the
    /// volume as it was.
    fn revert(
        &self,
        key: &str,
        snap: &str,
        on_bytes: OnBytes<'_>,
        may_swap: Gate<'_>,
    ) -> io::Result<()>;
    /// Destroys a snapshot. Missing is not an error.
    fn delete_snapshot(&self, snap: &str) -> io::Result<()>;
    /// Opens snapshot `snap` read-only as a directory tree (what a backup
    /// reads).
    fn read_snapshot(&self, snap: &str) -> io::Result<SnapshotView>;
    /// Makes the new snapshot `snap` out of what `fill` writes into an
    /// empty root shaped like volume `like` (its size limit and
    /// filesystem). The snapshot appears whole or not at all; a snapshot
    /// already stored as `snap` (left by an interrupted run) is replaced.
    fn build_snapshot(&self, snap: &str, like: &str, fill: Fill<'_>) -> io::Result<()>;
    /// Bytes a snapshot holds.
    fn snapshot_usage(&self, snap: &str) -> io::Result<u64>;
    /// Clears what interrupted work left behind; runs once at start-up.
    fn recover(&self) -> io::Result<()>;
    /// The pool's capacity and free bytes.
    fn space(&self) -> io::Result<Space>;
    /// The storage keys of every volume present in the pool, for the
    /// start-up report of entries no volume claims.
    fn stored_keys(&self) -> io::Result<Vec<String>>;

    /// A view of the existing host directory `rel` beneath the host-path
    /// root `root` as a volume whose snapshots live in this pool (`-o
    /// path=`). Pools whose snapshots are not plain directories cannot
    /// hold these.
    fn host_dir(&self, root: &Path, rel: &Path) -> io::Result<Box<dyn Backend>> {
        let _ = (root, rel);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "a {} pool cannot hold host-path volumes; use a dir pool",
                self.kind().as_str()
            ),
        ))
    }
}

/// Capacity of the filesystem a pool lives on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    pub capacity: u64,
    pub free: u64,
}

impl Space {
    /// The space of the filesystem holding `root`.
    pub fn of(root: &crate::tree::Root) -> io::Result<Space> {
        let (capacity, free) = root.space()?;
        Ok(Space { capacity, free })
    }
}

/// The file that marks a directory as a ballast pool. Its absence where
/// a pool used to be means the pool's filesystem is not mounted (yet).
pub const MARKER: &str = "ballast-pool";

/// A configured pool and its backend, which is absent while the pool is
/// unavailable (its filesystem not mounted yet).
#[derive(Debug)]
pub struct Pool {
    pub config: PoolConfig,
    /// Set once, when the pool is found; read without a lock.
    backend: OnceLock<Box<dyn Backend>>,
}

impl Pool {
    /// Opens a pool. A new pool's directory is created (its parent must
    /// exist) and marked. A pool that holds volumes (`known`) but whose
    /// directory is not marked is *unavailable*, not an error: its
    /// filesystem is probably not mounted yet, and creating anything there
    /// would hide the real one. [`Pool::attach`] tries again later.
    pub fn open(config: PoolConfig, known: bool) -> Result<Pool, String> {
        let pool = Pool { config, backend: OnceLock::new() };
        let marker = pool.config.path.join(MARKER);
        if !marker.exists() {
            if known {
                tracing::warn!(pool = %pool.config.name, "{}", pool.unavailable_reason());
                return Ok(pool);
            }
            let at = |e: io::Error| {
                format!("pool {:?} at {}: {e}", pool.config.name, pool.config.path.display())
            };
            Pool::check_new(&pool.config, false)?;
            match std::fs::create_dir(&pool.config.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(at(e)),
            }
            std::fs::write(&marker, format!("{}\n", pool.config.name)).map_err(at)?;
        }
        pool.attach()?;
        Ok(pool)
    }

    /// Whether a pool that is not there yet can be made now, checked before
    /// anything is made (by `open`, and by `ballast config check`): its
    /// directory or that directory's parent exists, a btrfs pool is on
    /// btrfs, a loop pool's mkfs is installed. `parent_made_first`: the
    /// parent does not have to exist, as `serve` makes it before the pools
    /// (`<state-dir>/pools`); the btrfs check then looks at the nearest
    /// directory that exists.
    pub fn check_new(config: &PoolConfig, parent_made_first: bool) -> Result<(), String> {
        let at = |e: io::Error| format!("pool {:?} at {}: {e}", config.name, config.path.display());
        let path = &config.path;
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !path.is_dir() && !parent.is_dir() && !parent_made_first {
            return Err(at(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "its parent directory {} does not exist (a new pool's directory is made \
                     in an existing one)",
                    parent.display()
                ),
            )));
        }
        match config.backend {
            BackendKind::Btrfs => {
                let probe = path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
                btrfs::check_btrfs(probe).map_err(at)
            }
            BackendKind::Loop => loopback::mkfs(config.fs).map(|_| ()).map_err(at),
            BackendKind::Dir => Ok(()),
        }
    }

    /// Opens the backend if the pool's directory is marked. Returns
    /// whether the pool is available now.
    pub fn attach(&self) -> Result<bool, String> {
        if self.backend.get().is_some() {
            return Ok(true);
        }
        if !self.config.path.join(MARKER).exists() {
            return Ok(false);
        }
        let at = |e: io::Error| {
            format!("pool {:?} at {}: {e}", self.config.name, self.config.path.display())
        };
        let backend: Box<dyn Backend> = match self.config.backend {
            BackendKind::Dir => Box::new(
                DirBackend::open_in(&self.config.path, self.config.host_area.as_deref())
                    .map_err(at)?,
            ),
            BackendKind::Btrfs => Box::new(BtrfsBackend::open(&self.config.path).map_err(at)?),
            BackendKind::Loop => {
                Box::new(LoopBackend::open(&self.config.path, self.config.fs).map_err(at)?)
            }
        };
        backend.recover().map_err(at)?;
        let _ = self.backend.set(backend);
        Ok(true)
    }

    /// The backend, or why the pool cannot be used now.
    pub fn backend(&self) -> Result<&dyn Backend, crate::Error> {
        self.backend
            .get()
            .map(|b| &**b)
            .ok_or_else(|| crate::Error::InvalidState(self.unavailable_reason()))
    }

    fn unavailable_reason(&self) -> String {
        format!(
            "pool {:?} is unavailable: {} is not marked as a ballast pool (no {MARKER} file); \
             is its filesystem mounted? Its volumes are kept and can be used once it is",
            self.config.name,
            self.config.path.display()
        )
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}
