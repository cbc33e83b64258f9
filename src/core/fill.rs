//! Fills: a new volume made as a copy of a volume, a snapshot or a
//! backup is filled by a job after its create is answered (Docker gives a
//! Create 30 s; a copy can take longer), and a fill cut by a crash starts
//! again from scratch. Mount waits for a fill; a failed one leaves the
//! volume unusable, saying why and what to do.

use std::sync::Arc;

use super::Ballast;
use super::locks::{Key, Lease, LeaseGuard};
use crate::backup::Backup;
use crate::opts;
use crate::pool::Spec;
use crate::public_id::Kind;
use crate::snapshot::{SnapState, Snapshot};
use crate::volume::{State, Transitioning, Volume};
use crate::{Error, Result};

/// What a new volume starts as a copy of.
pub(super) enum Source {
    Volume(Arc<Volume>),
    Snapshot(Arc<Snapshot>),
    Backup(Arc<Backup>),
}

impl Source {
    pub(super) fn public_id(&self) -> String {
        match self {
            Source::Volume(v) => v.public_id(),
            Source::Snapshot(s) => s.public_id(),
            Source::Backup(b) => b.public_id(),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Source::Volume(v) => format!("volume {:?}", v.name),
            Source::Snapshot(s) => format!("snapshot {} ({})", s.public_id(), s.name),
            Source::Backup(b) => format!("backup {} ({})", b.public_id(), b.name),
        }
    }
}

impl Ballast {
    /// Starts again the fills that a crash cut short (see `Ballast::open`;
    /// the janitor calls this on every pass): their storage is made anew
    /// and copied from the source once more. One whose pool is not
    /// available yet or whose source is busy waits for a later pass; one
    /// whose source is gone stays unusable, saying so.
    pub async fn resume_fills(&self) {
        let cut: Vec<_> = self
            .live_read()
            .values()
            .filter(|v| v.fill_from.is_some() && v.transitioning == Transitioning::Yes)
            .filter(|v| !self.inner.locks.leased(Lease::Filling(v.id)))
            .cloned()
            .collect();
        for v in cut {
            let from = v.fill_from.clone().unwrap_or_default();
            if let Err(e) = self.pool(&v.pool).and_then(|p| p.backend().map(|_| ())) {
                tracing::debug!(volume = %v.name, error = %e, "fill waits for its pool");
                continue;
            }
            let source = if let Some(id) = Kind::Snapshot.parse(&from) {
                self.snaps_read().get(&id).cloned().map(Source::Snapshot)
            } else if let Some(id) = Kind::Volume.parse(&from) {
                self.live_read().values().find(|s| s.id == id).cloned().map(Source::Volume)
            } else if from.starts_with(Kind::Backup.prefix()) {
                self.restorable(&from).ok().map(Source::Backup)
            } else {
                None
            };
            let Some(src) = source else {
                let message = format!(
                    "the fill from {from} was cut by a restart and cannot start again: its source \
                     no longer exists; this volume was never complete: remove it"
                );
                self.end_fill(v.id, Err(Error::InvalidState(message))).await;
                continue;
            };
            let filling = self.inner.locks.lease(Lease::Filling(v.id));
            match self.lease_source(&src).await {
                Ok(lease) => {
                    tracing::warn!(volume = %v.name, source = %from, "filling again: the last fill was cut by a restart");
                    let this = self.clone();
                    tokio::spawn(async move { this.fill(v.id, src, [lease, filling], true).await });
                }
                Err(e) => {
                    tracing::info!(volume = %v.name, source = %from, error = %e, "fill waits for its source");
                }
            }
        }
    }

    /// Copies a new volume's source into it, reporting progress on the
    /// volume, and ends its transition (or records why it failed).
    /// `restart`: storage left by an interrupted fill is made anew first.
    /// `leases` (on the source, and marking the fill) end with it.
    pub(super) async fn fill(
        &self,
        id: i64,
        source: Source,
        leases: [LeaseGuard; 2],
        restart: bool,
    ) {
        let Ok(v) = self.volume_by_id(id) else { return };
        let label = format!("filling from {}", source.describe());
        let total = match &source {
            Source::Volume(src) => src.used_bytes,
            Source::Snapshot(s) => s.size_bytes,
            Source::Backup(b) => b.size_bytes,
        };
        let (progress_to, volume) = (self.clone(), v.name.clone());
        let work = (*v).clone();
        let repo = match &source {
            Source::Backup(b) => match self.repo(&b.target).await {
                Ok(repo) => Some(repo),
                Err(e) => return self.end_fill(id, Err(e)).await,
            },
            _ => None,
        };
        let result = self
            .blocking(move |this| {
                let backend = this.storage(&work)?;
                let key = work.storage_key();
                let spec = Spec { size: work.size_bytes, ..opts::parse(&work.driver_opts)?.spec() };
                if restart {
                    backend.destroy(&key).and_then(|()| backend.create(&key, &spec)).map_err(
                        |e| Error::internal(format!("making volume {:?} anew", work.name), e),
                    )?;
                }
                let mut report = super::snapshots::progress(total, move |msg| {
                    progress_to.volume_message(id, &volume, format!("{label}: {msg}"))
                });
                match &source {
                    Source::Volume(src) => backend.copy(&src.storage_key(), &key, &mut report),
                    Source::Snapshot(s) => {
                        backend.copy_snapshot(&s.storage_key(), &key, &mut report)
                    }
                    Source::Backup(b) => repo
                        .as_deref()
                        .ok_or_else(|| std::io::Error::other("no repository"))
                        .and_then(|repo| backend.activate(&key).map(|dest| (repo, dest)))
                        .and_then(|(repo, dest)| {
                            let filled = this.restore_into(repo, b, &work, &dest);
                            filled.and(backend.deactivate(&key))
                        }),
                }
                .map_err(|e| {
                    let failed = format!("filling volume {:?} failed: {e}", work.name);
                    Error::Internal(discard_partial(&*backend, &work, &spec, &source, failed))
                })?;
                Ok(backend.usage(&key).unwrap_or(0))
            })
            .await;
        self.end_fill(id, result).await;
        drop(leases);
    }

    /// Records how a fill ended, under the volume's lock and on its
    /// current record (an update made meanwhile, a new description, is
    /// kept). A failed fill leaves `fill_from` set: the volume never mounts.
    async fn end_fill(&self, id: i64, result: Result<u64>) {
        let done = |v: &mut Volume| v.fill_from = None;
        self.end_job(id, result, done, ("volume filled", "filling the volume failed")).await;
    }

    /// Takes a read lease on a fill's source once, under its lock, it is
    /// still fit to be read: settled, complete, its own storage.
    pub(super) async fn lease_source(&self, source: &Source) -> Result<LeaseGuard> {
        match source {
            Source::Volume(src) => {
                let _guard = self.inner.locks.lock(Key::Volume(src.id)).await;
                let now = self.volume_by_id(src.id)?;
                fit_to_copy(&now)?;
                Ok(self.inner.locks.lease(Lease::Volume(src.id)))
            }
            Source::Backup(b) => {
                // Removing a backup waits for no lock: the lease is enough.
                self.restorable(&b.public_id())?;
                Ok(self.inner.locks.lease(Lease::Backup(b.id)))
            }
            Source::Snapshot(s) => {
                let _guard = self.inner.locks.lock(Key::Volume(s.volume_id)).await;
                match self.snaps_read().get(&s.id) {
                    Some(now) if now.state == SnapState::Created => {}
                    _ => {
                        return Err(Error::InvalidState(format!(
                            "option from-snapshot: snapshot {} is no longer there",
                            s.public_id()
                        )));
                    }
                }
                Ok(self.inner.locks.lease(Lease::Snapshot(s.id)))
            }
        }
    }
}

/// Throws away what a failed fill wrote (it may be most of the volume:
/// a restore fails on its last check), so that the volume holds and
/// reports no data until it is removed; a host directory is the user's
/// and is left as it is. Returns `failed` with what happened and what to
/// do.
fn discard_partial(
    backend: &dyn crate::pool::Backend,
    v: &Volume,
    spec: &Spec,
    source: &Source,
    failed: String,
) -> String {
    let again = match source {
        Source::Backup(_) => "create it again from another backup, or once the backup is repaired",
        _ => "create it again",
    };
    if v.host_path.is_some() {
        return format!("{failed}; remove the volume, empty the host directory and {again}");
    }
    let key = v.storage_key();
    match backend.destroy(&key).and_then(|()| backend.create(&key, spec)) {
        Ok(()) => format!("{failed}; what was written was deleted: remove the volume and {again}"),
        Err(e) => {
            tracing::warn!(volume = %v.name, error = %e, "cannot delete what a failed fill wrote");
            format!("{failed}; remove the volume and {again}")
        }
    }
}

/// Whether a volume can be the source of a copy now: its own storage
/// (not a host directory), allocated, complete, and not being changed.
pub(super) fn fit_to_copy(v: &Volume) -> Result<()> {
    let why = if v.host_path.is_some() {
        "it is a host-path volume; snapshot it and use from-snapshot".to_string()
    } else if !matches!(v.state, State::Inactive | State::Active) {
        format!("it is {} and has no data to copy", v.state.as_str())
    } else if v.fill_from.is_some() || v.transitioning == Transitioning::Yes {
        format!("it is not settled ({}); try again once it is", v.transitioning_message)
    } else {
        return Ok(());
    };
    Err(Error::InvalidState(format!("option from-volume={:?}: {why}", v.name)))
}
