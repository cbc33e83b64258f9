//! Storage pools. A pool is a named place where volumes live; its backend
//! is one implementation of [`Backend`], each in its own file.
//!
//! Backends are synchronous: they do filesystem work and are called from
//! blocking threads by the core, never on the async workers.

mod dir;
mod host;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

pub use dir::DirBackend;
pub use host::HostDir;

use crate::config::{BackendKind, PoolConfig};

/// What a new volume's storage must look like.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// Told how many more bytes a long operation has copied.
pub type OnBytes<'a> = &'a mut dyn FnMut(u64);

/// One storage backend. `key` is the volume's storage key and `snap` a
/// snapshot's (both derived from ids, never from user input).
pub trait Backend: Send + Sync + Debug {
    fn kind(&self) -> BackendKind;
    /// Whether `size` limits are enforced by this backend.
    fn enforces_size(&self) -> bool;
    /// Creates empty storage for a volume.
    fn create(&self, key: &str, spec: &Spec) -> io::Result<()>;
    /// Copies the content of volume `src` into the new volume `dst`.
    fn copy(&self, src: &str, dst: &str) -> io::Result<()>;
    /// Makes the volume usable on this host and returns its mountpoint.
    fn activate(&self, key: &str) -> io::Result<PathBuf>;
    /// Undoes `activate`; the data stays.
    fn deactivate(&self, key: &str) -> io::Result<()>;
    /// Destroys the volume's storage. Missing storage is not an error.
    fn destroy(&self, key: &str) -> io::Result<()>;
    /// Where Docker finds the volume's files once active.
    fn mountpoint(&self, key: &str) -> PathBuf;
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
    fn revert(&self, key: &str, snap: &str, on_bytes: OnBytes<'_>) -> io::Result<()>;
    /// Destroys a snapshot. Missing is not an error.
    fn delete_snapshot(&self, snap: &str) -> io::Result<()>;
    /// Bytes a snapshot holds.
    fn snapshot_usage(&self, snap: &str) -> io::Result<u64>;
    /// Clears what interrupted work left behind; runs once at start-up.
    fn recover(&self) -> io::Result<()>;
    /// The pool's capacity and free bytes.
    fn space(&self) -> io::Result<Space>;

    /// A view of the existing host directory `path` as a volume whose
    /// snapshots live in this pool (`-o path=`). Pools whose snapshots
    /// are not plain directories cannot hold these.
    fn host_dir(&self, path: &Path) -> io::Result<Box<dyn Backend>> {
        let _ = path;
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

/// A configured pool and its backend.
#[derive(Debug)]
pub struct Pool {
    pub config: PoolConfig,
    pub backend: Box<dyn Backend>,
}

impl Pool {
    /// Opens a pool, creating its directory when missing.
    pub fn open(config: PoolConfig) -> Result<Pool, String> {
        let backend: Box<dyn Backend> = match config.backend {
            BackendKind::Dir => Box::new(DirBackend::open(&config.path).map_err(|e| {
                format!("pool {:?} at {}: {e}", config.name, config.path.display())
            })?),
            other => {
                return Err(format!(
                    "pool {:?}: backend {} is not available",
                    config.name,
                    other.as_str()
                ));
            }
        };
        Ok(Pool { config, backend })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }
}
