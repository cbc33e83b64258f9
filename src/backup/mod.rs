//! Backups: restic repositories (format v2: deduplicated, compressed,
//! encrypted) on a directory or an S3 store, written through `rustic_core`.
//!
//! The core sees only [`Repository`] and the plain types below; no rustic
//! or opendal type leaves this module. A repository is opened per target
//! (`open`), is synchronous (the core calls it from blocking threads), and
//! is safe to share between threads.
//!
//! - `restic.rs`: opening (and creating) the repository over `rustic_core`
//!   (any backend), snapshot lookup, prune, check.
//! - `ops.rs`: [`Repository`] for it: backup, list, remove, verify,
//!   retention; `restore.rs`: restore, with `walk.rs`, the hash-checked
//!   tree walk that refuses entries a restore must not write and trees
//!   beyond a restore's bounds (entries, depth, listing size).
//! - `source.rs`: the backup's source (rustic's walk, counted and watched
//!   for unreadable entries); `live.rs`: the source of a backup that reads
//!   the live volume (listed by descriptor, each file checked not to
//!   change while read); `meta.rs`: the snapshot description (volume
//!   fields, root owner and mode).
//! - `progress.rs`: rustic's progress relayed to [`OnProgress`];
//!   `fail.rs`: rustic's errors and panics mapped to [`Error`].
//! - `s3.rs`: rustic's backend traits over opendal's S3 service;
//!   `stoppable.rs`: a backend that a stop flag cuts off (cancellation).
//! - `key.rs`: the repository password (a file, generated when absent).
//! - `forge.rs` (tests only): objects written straight into a repository
//!   with its key, for trees no archiver makes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

mod fail;
#[cfg(test)]
pub(crate) mod forge;
pub(crate) mod key;
mod live;
mod meta;
mod ops;
mod progress;
mod restic;
mod restore;
pub(crate) mod s3;
mod source;
mod stoppable;
mod walk;

// The record sits beside the other records, below this engine; the
// engine writes its `VolumeMeta` into every snapshot.
pub use crate::backup_record::{Backup, BackupState, VolumeMeta};

#[cfg(test)]
pub(crate) mod tests;

/// One backup as the repository knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The restic snapshot id (64 hex digits).
    pub id: String,
    /// When the backup was taken, ms since the epoch.
    pub time_ms: i64,
    pub meta: VolumeMeta,
    /// Bytes of file content the backup holds.
    pub size_bytes: u64,
    /// Bytes this backup added to the repository (after dedup and
    /// compression), from the snapshot's summary; 0 for a listed snapshot
    /// written without one (restic before 0.17).
    pub stored_bytes: u64,
    /// Files and directories in the backup.
    pub files: u64,
    /// Files found unchanged since the parent backup, so not read.
    pub unchanged_files: u64,
    /// Files of a live backup that changed while being read every time
    /// they were read, kept as last read (possibly torn), relative to the
    /// volume's root.
    pub changed: Vec<String>,
}

/// How far a long operation is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes_done: u64,
    /// 0 while unknown.
    pub bytes_total: u64,
    pub files_done: u64,
}

/// Told how far a backup or restore is, from a helper thread while the
/// call runs (never after it returns), at most ten times a second.
pub type OnProgress<'a> = &'a (dyn Fn(Progress) + Sync);

/// Retention after each backup: how many of one volume's backups to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    pub last: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
}

impl Keep {
    pub fn is_empty(&self) -> bool {
        *self == Keep::default()
    }
}

/// Why a backup operation failed. Each message names what failed and is
/// what users see.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such backup in the repository.
    #[error("{0}")]
    NotFound(String),
    /// The store cannot be reached, or the password does not open the
    /// repository.
    #[error("{0}")]
    Unavailable(String),
    /// Data read back does not match what was written: corruption or
    /// tampering. Names the backup and the object.
    #[error("{0}")]
    Corrupt(String),
    /// The backup's tree holds something a restore must not write (a name
    /// with `/`, `..`, an absolute path).
    #[error("{0}")]
    Refused(String),
    /// Anything else (local I/O, a full disk).
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One restic repository. All methods block; any of them may run on
/// several threads at once. A prune (`remove`, `apply_retention`) waits
/// for the backups running on the same repository and holds new ones back
/// until it is done.
pub trait Repository: Send + Sync {
    /// Backs up the directory tree `src` (its root's owner and mode
    /// included). `parent` is the restic id of an earlier backup of the
    /// same volume: files whose metadata is unchanged are not read again.
    fn backup(
        &self,
        src: &Path,
        meta: &VolumeMeta,
        parent: Option<&str>,
        progress: OnProgress<'_>,
    ) -> Result<BackupInfo>;

    /// Backs up the live directory tree `dir` (named `path` in messages)
    /// without copying it first: each file is read from the inode listed
    /// and must not change while read, else it is read again in another
    /// pass; one that changes in every pass is kept as last read and named
    /// in [`BackupInfo::changed`]. Per file, not a point-in-time image of
    /// the tree. `parent` as for `backup`; the change time counts too.
    fn backup_live(
        &self,
        dir: std::os::fd::OwnedFd,
        path: &Path,
        meta: &VolumeMeta,
        parent: Option<&str>,
        progress: OnProgress<'_>,
    ) -> Result<BackupInfo>;

    /// Every ballast backup in the repository (snapshots tagged
    /// `ballast`), oldest first.
    fn list(&self) -> Result<Vec<BackupInfo>>;

    /// Restores backup `id` into `dest`, an existing empty directory,
    /// root owner and mode included. Every object is checked as it is
    /// read; a tree entry that would write outside `dest` fails the
    /// restore before anything is written. On error `dest` may hold a
    /// partial tree: the caller throws it away. A tree beyond the bounds
    /// of a restore (50 million entries, 2,048 levels, a directory listed
    /// in more than 128 MiB, a path longer than PATH_MAX) is refused
    /// before anything is written.
    fn restore(&self, id: &str, dest: &Path, progress: OnProgress<'_>) -> Result<()> {
        self.restore_until(id, dest, progress, &Arc::new(AtomicBool::new(false)))
    }

    /// [`Repository::restore`], cancelled once `stop` is set: reading or
    /// checking the tree stops at its next entry, and the writing of the
    /// files' contents before its next read of the repository.
    fn restore_until(
        &self,
        id: &str,
        dest: &Path,
        progress: OnProgress<'_>,
        stop: &Arc<AtomicBool>,
    ) -> Result<()>;

    /// Forgets backup `id` and prunes the data no other backup uses.
    fn remove(&self, id: &str) -> Result<()>;

    /// Reads and checks everything backup `id` needs.
    fn verify(&self, id: &str) -> Result<()>;

    /// Forgets the backups of volume `volume_id` (public id) that `keep`
    /// does not keep, then prunes. Returns the restic ids forgotten.
    fn apply_retention(&self, host_id: &str, volume_id: &str, keep: Keep) -> Result<Vec<String>>;
}

/// The repository of backup target `target` (`file:///path` or
/// `s3://bucket/prefix`), created in the store on its first operation.
/// Without a `password_file`, the target's password is generated now into
/// `<state_dir>/backup-keys/<target>.key` unless it exists. Cheap: nothing
/// is read from the store until an operation runs. Open each target once
/// and share the handle: prunes and backups exclude each other only
/// within one handle.
pub fn open(
    target: &crate::config::BackupTarget,
    state_dir: &Path,
) -> Result<std::sync::Arc<dyn Repository>> {
    Ok(std::sync::Arc::new(restic::open(target, state_dir)?))
}
