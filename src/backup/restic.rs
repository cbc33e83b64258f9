//! [`Repository`] over `rustic_core`: one restic repository (format v2)
//! per backup target, created on first use.
//!
//! Each operation opens the repository afresh with its own progress bars
//! (rustic fixes them at open); the master key found by the first open is
//! kept, so later opens skip the password's key derivation. Operations
//! run concurrently: restic's format lets writers add packs, indexes and
//! snapshots side by side, and prune never deletes at once (see `prune`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustic_backend::LocalBackend;
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeyOptions, OpenStatus, PruneOptions,
    Repository as Rustic, RepositoryBackends, RepositoryOptions, RusticError, WriteBackend,
};

use super::fail::Target;
use super::key::Password;
use super::progress::Bars;
use super::{BackupInfo, Error, Result, key};
use crate::config::BackupTarget;

/// The tag on every snapshot ballast writes; `list` shows no other.
pub(super) const TAG: &str = "ballast";

pub(super) struct Restic {
    pub target: Target,
    backends: RepositoryBackends,
    /// The repository directory of a `file://` target.
    local_dir: Option<PathBuf>,
    password: Password,
    /// The master key, once an open found the password good.
    key: Mutex<Option<MasterKey>>,
    /// Backups share it, a prune holds it alone (see `prune`).
    pub prune_gate: RwLock<()>,
}

/// The repository of `target`; nothing is read or written until the
/// first operation, except the generated password file (made now when
/// the target has no `password_file` and none exists yet).
pub(super) fn open(target: &BackupTarget, state_dir: &Path) -> Result<Restic> {
    let name = &target.name;
    let (be, local_dir): (Arc<dyn WriteBackend>, _) =
        if let Some(path) = target.url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(Error::Failed(format!(
                    "backup target {name}: {:?} is not file:///absolute/path",
                    target.url
                )));
            }
            let be = LocalBackend::new(path, Vec::new()).map_err(|e| {
                Error::Failed(format!("backup target {name}: {}", super::fail::describe(&e)))
            })?;
            (Arc::new(be), Some(PathBuf::from(path)))
        } else if target.url.starts_with("s3://") {
            (super::s3::backend(target)?, None)
        } else {
            return Err(Error::Failed(format!(
                "backup target {name}: {:?} is neither file:///path nor s3://bucket/prefix",
                target.url
            )));
        };
    Ok(Restic {
        target: Target { name: name.clone(), url: target.url.clone() },
        backends: RepositoryBackends::new(be, None),
        local_dir,
        password: key::load(target, state_dir)?,
        key: Mutex::new(None),
        prune_gate: RwLock::new(()),
    })
}

impl Restic {
    /// Opens the repository for one operation. Only a backup (`create`)
    /// makes one where the target holds none: a listing or a restore of a
    /// store that is not mounted must not find a new, empty repository
    /// (and conclude that every backup is gone).
    pub fn repo(&self, bars: &Bars, doing: &str, create: bool) -> Result<Rustic<OpenStatus>> {
        self.open_over(&self.backends, bars, doing, create)
    }

    /// The repository for an operation that `stop` cancels: once it is
    /// set, nothing more is read or written (see `stoppable.rs`).
    pub fn repo_until(
        &self,
        bars: &Bars,
        doing: &str,
        stop: &Arc<AtomicBool>,
    ) -> Result<Rustic<OpenStatus>> {
        super::stoppable::quiet_stopped_panics();
        let be = super::stoppable::Stoppable::new(self.backends.repository(), stop.clone());
        self.open_over(&RepositoryBackends::new(Arc::new(be), None), bars, doing, false)
    }

    fn open_over(
        &self,
        backends: &RepositoryBackends,
        bars: &Bars,
        doing: &str,
        create: bool,
    ) -> Result<Rustic<OpenStatus>> {
        self.reachable(doing)?;
        let opts = RepositoryOptions::default().no_cache(true);
        let fresh = || {
            Rustic::new_with_progress(&opts, backends, bars.clone())
                .map_err(|e| self.target.error(doing, &e))
        };
        let known = self.key.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(key) = known {
            match fresh()?.open(&Credentials::Masterkey(key)) {
                Ok(repo) => return Ok(repo),
                // Replaced by another repository? Try the password again.
                Err(e) => {
                    tracing::debug!(error = %super::fail::describe(&e), "master key open failed")
                }
            }
        }
        // Held across the first open: two threads must not both create
        // the repository.
        let mut key = self.key.lock().unwrap_or_else(PoisonError::into_inner);
        let repo = fresh()?;
        let password = Credentials::password(&self.password.secret);
        let exists = repo.config_id().map_err(|e| self.unreachable(doing, &e))?.is_some();
        let opened = if exists {
            repo.open(&password)
        } else if !create {
            return Err(Error::Unavailable(format!(
                "{doing} on backup target {}: there is no repository at {} (a backup creates \
                 it); is the store mounted?",
                self.target.name, self.target.url
            )));
        } else {
            tracing::info!(target = %self.target.name, url = %self.target.url, "creating the backup repository");
            repo.init(&password, &KeyOptions::default(), &ConfigOptions::default())
        };
        let repo = opened.map_err(|e| {
            if e.is_incorrect_password() {
                Error::Unavailable(format!(
                    "{doing} on backup target {}: the password in {} does not open the \
                     repository at {}",
                    self.target.name,
                    self.password.file.display(),
                    self.target.url
                ))
            } else {
                self.target.error(doing, &e)
            }
        })?;
        *key = Some(repo.key());
        Ok(repo)
    }

    /// A `file://` repository is reachable when its directory, or the
    /// directory it is to be created in, exists: a missing parent is
    /// most likely a store that is not mounted.
    fn reachable(&self, doing: &str) -> Result<()> {
        let Some(dir) = &self.local_dir else { return Ok(()) };
        if dir.is_dir() || dir.parent().is_some_and(Path::is_dir) && !dir.exists() {
            return Ok(());
        }
        Err(Error::Unavailable(format!(
            "{doing} on backup target {}: the repository directory {} is not reachable",
            self.target.name,
            dir.display()
        )))
    }

    fn unreachable(&self, doing: &str, e: &RusticError) -> Error {
        Error::Unavailable(format!(
            "{doing} on backup target {}: cannot reach the repository at {}: {}",
            self.target.name,
            self.target.url,
            super::fail::describe(e)
        ))
    }

    /// Every ballast snapshot.
    pub fn snapshots(&self, repo: &Rustic<OpenStatus>, doing: &str) -> Result<Vec<SnapshotFile>> {
        repo.get_matching_snapshots(|s| s.tags.contains(TAG))
            .map_err(|e| self.target.error(doing, &e))
    }

    /// The ballast snapshot whose id is or starts with `id` (8 to 64 hex
    /// digits).
    pub fn find(&self, repo: &Rustic<OpenStatus>, id: &str, doing: &str) -> Result<SnapshotFile> {
        let id = id.to_ascii_lowercase();
        let not_found = |why: &str| {
            Error::NotFound(format!(
                "no backup {id:?} on backup target {} ({}){why}",
                self.target.name, self.target.url
            ))
        };
        if !(8..=64).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found(": a backup id is 8 to 64 hex digits"));
        }
        let mut found: Vec<_> = self
            .snapshots(repo, doing)?
            .into_iter()
            .filter(|s| s.id.to_hex().starts_with(&id))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(not_found("")),
            n => Err(not_found(&format!(": {n} backups start with it, give more digits"))),
        }
    }

    /// Removes the data no snapshot uses any more. Packs are only marked
    /// for deletion, and deleted by a prune at least 23 hours later
    /// (rustic's lock-free scheme): a restore or verify that read the
    /// index before the prune still finds them.
    ///
    /// A backup, though, reuses blobs of the packs its index listed when
    /// it started; if a prune marks those packs before the backup saves
    /// its snapshot, the snapshot names blobs that no index lists until a
    /// later prune sees them used and unmarks their packs, and restoring
    /// it fails meanwhile. So in this process a prune waits for running
    /// backups, and backups wait for a running prune (a prune by another
    /// host sharing the repository is not excluded).
    pub fn prune(&self, repo: &Rustic<OpenStatus>, doing: &str) -> Result<()> {
        let _alone = self.prune_gate.write().unwrap_or_else(PoisonError::into_inner);
        let opts = PruneOptions::default();
        let plan = repo.prune_plan(&opts).map_err(|e| self.target.error(doing, &e))?;
        repo.prune(&opts, plan).map_err(|e| self.target.error(doing, &e))
    }

    /// Reads every pack the tree `snap` needs and checks each blob's hash,
    /// with the repository's index and pack list.
    pub fn check(&self, repo: &Rustic<OpenStatus>, snap: &SnapshotFile, doing: &str) -> Result<()> {
        let opts = CheckOptions::default().read_data(true);
        let results = super::fail::unwind(|| repo.check_with_trees(opts, vec![snap.tree]))
            .map_err(|p| {
                Error::Failed(format!(
                    "{doing} on backup target {}: {}",
                    self.target.name,
                    super::fail::panic_summary(&p)
                ))
            })?
            .map_err(|e| self.target.error(doing, &e))?;
        if results.is_ok().is_ok() {
            return Ok(());
        }
        // The level's type is not exported; its Debug form names it.
        let errors: Vec<String> = results
            .0
            .iter()
            .filter(|(level, _)| format!("{level:?}") == "Error")
            .map(|(_, e)| super::fail::one_line(&e.to_string()))
            .collect();
        Err(Error::Corrupt(format!(
            "{doing} on backup target {}: backup {} is damaged ({} problem{}): {}",
            self.target.name,
            snap.id.to_hex().as_str(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        )))
    }
}

/// What `list` and `backup` say about a snapshot; `None` for one whose
/// description is not ballast's.
pub(super) fn info(snap: &SnapshotFile) -> Option<BackupInfo> {
    let desc = super::meta::Description::parse(snap.description.as_deref()?)?;
    let summary = snap.summary.clone().unwrap_or_default();
    Some(BackupInfo {
        id: snap.id.to_hex().as_str().to_string(),
        time_ms: snap.time.timestamp().as_millisecond(),
        meta: desc.meta,
        size_bytes: summary.total_bytes_processed,
        stored_bytes: summary.data_added_packed,
        files: summary.total_files_processed + summary.total_dirs_processed,
        unchanged_files: summary.files_unmodified,
        changed: Vec::new(),
    })
}
