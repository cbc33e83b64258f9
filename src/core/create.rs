//! Create: Docker's `VolumeDriver.Create` and the admin endpoint's POST.
//!
//! Crash safety: the record is written first in state `creating`, then the
//! storage is made, then the record turns `inactive`. A crash in between
//! leaves a `creating` row, which start-up rolls back (it was never
//! acknowledged).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Ballast;
use super::fill::{Source, fit_to_copy};
use super::locks::{Guard, Key, Lease};
use crate::opts::{self, CreateOpts};
use crate::pool::{BackendKind, Spec};
use crate::snapshot::SnapState;
use crate::units;
use crate::units::now_ms;
use crate::volume::{State, Transitioning, Volume, validate_name, validate_new_name};
use crate::{Error, Result};

/// What a create answers when a live volume has the name already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfTaken {
    /// That volume, when its options are the same (Docker's Create: Docker
    /// repeats it and expects success); other options are a conflict.
    Reuse,
    /// A conflict whatever the options: the caller asked for a new volume
    /// (the admin API), and of simultaneous creates of one name exactly
    /// one must say it made it.
    Refuse,
}

impl Ballast {
    /// Docker's Create: allocates storage at once; idempotent.
    pub async fn create(&self, name: &str, raw: BTreeMap<String, String>) -> Result<Arc<Volume>> {
        self.create_volume(name, raw, true, None, IfTaken::Reuse).await
    }

    /// Creates a volume; `if_taken` says what a name in use answers.
    /// Without `allocate` the volume stays `requested` and has no storage
    /// yet. `description` (the admin API's field) overrides the driverOpt
    /// of that name.
    pub async fn create_volume(
        &self,
        name: &str,
        raw: BTreeMap<String, String>,
        allocate: bool,
        description: Option<String>,
        if_taken: IfTaken,
    ) -> Result<Arc<Volume>> {
        validate_name(name)?;
        // Docker repeats Creates: answered from memory, never behind a
        // job or another request. Before the options are read, so that a
        // name taken is what the admin API hears first.
        if let Some(existing) = self.live_read().get(name).cloned() {
            return taken(existing, &raw, if_taken);
        }
        let parsed = opts::parse(&raw)?;
        if parsed.schedule.backup_every.is_some() {
            self.target(parsed.schedule.backup_target.as_deref())
                .map_err(|e| Error::InvalidInput(format!("option backup-target: {e}")))?;
        }
        validate_new_name(name)?;
        // Held until the new volume is published: creates of one name run
        // one after the other from here, and each later one finds it.
        let _claim = self.inner.locks.lock(Key::Name(name.to_string())).await;
        if let Some(existing) = self.live_read().get(name).cloned() {
            return taken(existing, &raw, if_taken);
        }
        self.check_access(&raw)?;
        if let Some(id) = &parsed.from_backup
            && self.find_backup(id).is_err()
            && id.len() >= 8
            && id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            // Perhaps taken on another host: look in every target once.
            self.sync_all_backups().await;
        }
        let (pool, source) = self.resolve(&parsed)?;
        let size_bytes = match &source {
            // A clone is its source's size: a loop image is copied whole.
            Some(Source::Volume(src)) if parsed.size.is_none() => src.size_bytes,
            // A restore keeps the backed-up size where the pool enforces one.
            Some(Source::Backup(b)) if parsed.size.is_none() && self.enforces_size(&pool) => {
                self.effective_size(&pool, b.meta.size_bytes)
            }
            _ => self.effective_size(&pool, parsed.size),
        };
        let host_path = match &parsed.path {
            Some(p) => Some(self.resolve_host_path(p, &pool)?),
            None => None,
        };
        let _path_claim = match &host_path {
            Some(p) => Some(self.claim_host_path(p).await?),
            None => None,
        };
        if !allocate && source.is_some() {
            return Err(Error::InvalidInput(
                "\"allocate\": false cannot be combined with from-volume, from-snapshot or from-backup"
                    .into(),
            ));
        }
        let _reservation = self.reserve(&pool, size_bytes)?;
        // Held from here until the fill is done: the source cannot be
        // reverted, removed or purged while it is read.
        let lease = match &source {
            Some(src) => Some(self.lease_source(src).await?),
            None => None,
        };
        let cluster = self.new_membership(&raw, host_path.is_some())?;
        self.check_follow(&raw, &pool, cluster.is_some())?;
        let mut v = Volume {
            id: 0,
            name: name.to_string(),
            description: description.unwrap_or_else(|| parsed.description.clone()),
            driver_opts: raw,
            pool,
            state: State::Creating,
            transitioning: Transitioning::No,
            transitioning_message: String::new(),
            created_ms: now_ms(),
            removed_ms: None,
            size_bytes,
            used_bytes: 0,
            mounts: BTreeMap::new(),
            host_path,
            fill_from: source.as_ref().map(Source::public_id),
            written_ms: now_ms(),
            schedule: parsed.schedule.clone(),
            archived_in: None,
            cluster,
        };
        // A loop pool gives every volume a size: its default when none is asked.
        let spec = Spec { size: v.size_bytes, ..parsed.spec() };
        let filling = source.as_ref().map(Source::describe);
        let v = self
            .blocking(move |this| {
                v.id = this.inner.store.insert(&v)?;
                if !allocate {
                    v.state = State::Requested;
                    this.inner.store.save(&v)?;
                    return Ok(v);
                }
                let backend = this.storage(&v)?;
                let key = v.storage_key();
                // Ids are never reused, so anything already stored under this
                // key is the leftover of a create lost with its record (a
                // power cut before the record reached the disk): clear it.
                let made = backend.destroy(&key).and_then(|()| backend.create(&key, &spec));
                if let Err(e) = made {
                    // Leave nothing behind: no storage, no record.
                    let _ = backend.destroy(&key);
                    this.inner.store.delete(v.id)?;
                    return Err(Error::internal(
                        format!("creating storage for volume {:?} in pool {:?}", v.name, v.pool),
                        e,
                    ));
                }
                v.state = State::Inactive;
                if let Some(src) = &filling {
                    // Filled by a job: Docker gives a Create 30 s, and a copy
                    // can take longer. Mount waits for it.
                    v.transitioning = Transitioning::Yes;
                    v.transitioning_message = format!("filling from {src}: starting");
                }
                this.inner.store.save(&v)?;
                Ok(v)
            })
            .await?;
        if let Err(e) = self.register(&v).await {
            // Taken on another host meanwhile, or etcd unreachable: undo.
            let (id, key, pool) = (v.id, v.storage_key(), v.pool.clone());
            let undone = self
                .blocking(move |this| {
                    if let Ok(backend) = this.pool(&pool).and_then(|p| p.backend()) {
                        backend
                            .destroy(&key)
                            .map_err(|e| Error::internal("undoing a create", e))?;
                    }
                    this.inner.store.delete(id)
                })
                .await;
            if let Err(u) = undone {
                tracing::warn!(volume = %v.name, error = %u, "cannot undo a create the cluster refused");
            }
            return Err(e);
        }
        tracing::info!(volume = %v.name, id = %v.public_id(), pool = %v.pool, state = v.state.as_str(), "volume created");
        // Marked before anyone can see the volume, so that `resume_fills`
        // never starts a second fill of it.
        let filling = self.inner.locks.lease(Lease::Filling(v.id));
        let created = self.publish(v);
        if let (Some(src), Some(lease)) = (source, lease) {
            let (this, id) = (self.clone(), created.id);
            tokio::spawn(async move { this.fill(id, src, [lease, filling], false).await });
        }
        Ok(created)
    }

    /// Promises `size` bytes of a loop pool to a volume being created,
    /// after checking that the pool's summed sizes stay within its
    /// capacity × `overcommit` (other promises included). The promise
    /// ends when the returned value is dropped, once the new volume is
    /// published and counts by itself.
    fn reserve(&self, pool: &str, size: Option<u64>) -> Result<Option<Reservation<'_>>> {
        let pool = self.pool(pool)?;
        let (Some(size), BackendKind::Loop) = (size, pool.config.backend) else {
            return Ok(None);
        };
        let capacity = pool.backend()?.space()?.capacity;
        let mut reserved = self.inner.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let promised = reserved.get(pool.name()).copied().unwrap_or(0);
        let committed: u64 = self
            .live_read()
            .values()
            .filter(|v| v.pool == pool.name())
            .filter_map(|v| v.size_bytes)
            .sum::<u64>()
            .saturating_add(promised);
        let allowed = crate::units::whole(capacity as f64 * pool.config.overcommit);
        if committed.saturating_add(size) > allowed {
            return Err(Error::InvalidInput(format!(
                "option size: pool {:?} cannot fit {}: its volumes already take {} of {} allowed \
                 ({} capacity × overcommit {})",
                pool.name(),
                units::human_size(size),
                units::human_size(committed),
                units::human_size(allowed),
                units::human_size(capacity),
                pool.config.overcommit
            )));
        }
        *reserved.entry(pool.name().to_string()).or_insert(0) += size;
        Ok(Some(Reservation { ballast: self, pool: pool.name().to_string(), size }))
    }

    /// Checks a host path (`-o path=`): an existing directory strictly
    /// inside one of `host_path_roots` once symlinks are resolved. Returns
    /// the resolved path; `claim_host_path` checks, under its lock, that
    /// no other volume is that directory.
    fn resolve_host_path(&self, requested: &Path, pool: &str) -> Result<PathBuf> {
        let roots = &self.inner.host_path_roots;
        let shown = requested.display();
        if roots.is_empty() {
            return Err(Error::InvalidInput(format!(
                "option path={shown}: host paths are refused because host_path_roots is empty in the config"
            )));
        }
        let real = std::fs::canonicalize(requested)
            .map_err(|e| Error::InvalidInput(format!("option path={shown}: {e}")))?;
        if !real.is_dir() {
            return Err(Error::InvalidInput(format!("option path={shown}: not a directory")));
        }
        if !roots.iter().any(|r| real.starts_with(r) && real != *r) {
            let list: Vec<_> = roots.iter().map(|r| r.display().to_string()).collect();
            return Err(Error::InvalidInput(format!(
                "option path={shown}: {} is not inside host_path_roots ({})",
                real.display(),
                list.join(", ")
            )));
        }
        let (root, rel) = self.host_root(&real)?;
        self.pool(pool)?
            .backend()?
            .host_dir(root, rel)
            .map_err(|e| Error::InvalidInput(format!("option path={shown}: {e}")))?;
        Ok(real)
    }

    /// Serializes the claims of one host directory (creates, restores) and
    /// checks, under that lock, that no live volume is it already.
    pub(super) async fn claim_host_path(&self, path: &Path) -> Result<Guard> {
        let guard = self.inner.locks.lock(Key::Name(format!("path:{}", path.display()))).await;
        if let Some(other) =
            self.live_read().values().find(|v| v.host_path.as_deref() == Some(path))
        {
            return Err(Error::Conflict(format!(
                "host path {}: volume {:?} already is that directory",
                path.display(),
                other.name
            )));
        }
        self.host_root(path)?;
        Ok(guard)
    }

    /// Checks the options against the pools, volumes and snapshots that
    /// exist and returns the target pool and the source of a copy.
    fn resolve(&self, o: &CreateOpts) -> Result<(String, Option<Source>)> {
        let source = match (&o.from_volume, &o.from_snapshot) {
            _ if o.from_backup.is_some() => {
                let id = o.from_backup.as_deref().unwrap_or_default();
                let b = self
                    .restorable(id)
                    .map_err(|e| Error::InvalidInput(format!("option from-backup={id:?}: {e}")))?;
                Some(Source::Backup(b))
            }
            (Some(src), _) => {
                let v = self.live_read().get(src).cloned().ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "option from-volume={src:?}: no volume with that name exists"
                    ))
                })?;
                fit_to_copy(&v)?;
                Some(Source::Volume(v))
            }
            (None, Some(snap)) => {
                let s = self.find_snapshot(snap).map_err(|e| {
                    Error::InvalidInput(format!("option from-snapshot={snap:?}: {e}"))
                })?;
                if s.state != SnapState::Created {
                    return Err(Error::InvalidInput(format!(
                        "option from-snapshot={snap:?}: snapshot {} is {}, not created",
                        s.public_id(),
                        s.state.as_str()
                    )));
                }
                Some(Source::Snapshot(s))
            }
            (None, None) => None,
        };
        let (source_pool, source_opt) = match &source {
            // A backup restores into any pool.
            Some(Source::Backup(_)) => (None, "from-backup"),
            Some(Source::Volume(v)) => (Some(v.pool.clone()), "from-volume"),
            Some(Source::Snapshot(s)) => {
                (Some(self.volume_by_id(s.volume_id)?.pool.clone()), "from-snapshot")
            }
            None => (None, ""),
        };
        // A copy lands beside its source unless a pool is named.
        let pool_name = o
            .pool
            .clone()
            .or_else(|| source_pool.clone())
            .unwrap_or_else(|| self.inner.default_pool.clone());
        let pool = self.inner.pools.get(&pool_name).ok_or_else(|| {
            Error::InvalidInput(format!(
                "option pool={pool_name:?}: no such pool; pools: {}",
                self.pool_names()
            ))
        })?;
        if let Some(src_pool) = source_pool
            && src_pool != pool_name
        {
            return Err(Error::InvalidInput(format!(
                "option {source_opt}: the source lives in pool {src_pool:?}, and copies across pools are \
                 not supported; leave out `pool` or use pool={src_pool:?}"
            )));
        }
        if o.size.is_some() && !pool.backend()?.enforces_size() {
            return Err(Error::InvalidInput(format!(
                "option size: pool {pool_name:?} uses the {} backend, which cannot enforce a size limit; \
                 sizes are enforced by btrfs and loop pools",
                pool.config.backend.as_str()
            )));
        }
        if o.fs.is_some() && pool.config.backend != BackendKind::Loop {
            return Err(Error::InvalidInput(format!(
                "option fs: pool {pool_name:?} uses the {} backend; fs applies to loop pools only",
                pool.config.backend.as_str()
            )));
        }
        if pool.config.backend == BackendKind::Loop
            && let Some(size) = o.size
        {
            let fs = o.fs.unwrap_or(pool.config.fs);
            let min = fs.min_size();
            if size < min {
                return Err(Error::InvalidInput(format!(
                    "option size={}: an {} filesystem needs at least {}",
                    units::format_size(size),
                    fs.as_str(),
                    units::format_size(min)
                )));
            }
        }
        Ok((pool_name, source))
    }

    /// The size a new volume gets: the one asked for or, in a loop pool,
    /// the pool's default (an image file needs a size).
    fn enforces_size(&self, pool: &str) -> bool {
        self.pool(pool).and_then(|p| p.backend()).is_ok_and(|b| b.enforces_size())
    }

    fn effective_size(&self, pool: &str, asked: Option<u64>) -> Option<u64> {
        match self.inner.pools.get(pool) {
            Some(p) if p.config.backend == BackendKind::Loop => {
                asked.or(Some(p.config.default_size))
            }
            _ => asked,
        }
    }
}

/// A promise of pool space; see [`Ballast::reserve`].
struct Reservation<'a> {
    ballast: &'a Ballast,
    pool: String,
    size: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = self.ballast.inner.reserved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = reserved.get_mut(&self.pool) {
            *n = n.saturating_sub(self.size);
        }
    }
}

/// The answer to a create of a name that `existing` has.
fn taken(
    existing: Arc<Volume>,
    raw: &BTreeMap<String, String>,
    if_taken: IfTaken,
) -> Result<Arc<Volume>> {
    let name = &existing.name;
    match if_taken {
        IfTaken::Reuse if existing.driver_opts == *raw => Ok(existing),
        IfTaken::Reuse => Err(Error::Conflict(format!(
            "volume {name:?} already exists with different options (existing: {}, requested: {})",
            show_opts(&existing.driver_opts),
            show_opts(raw)
        ))),
        IfTaken::Refuse => Err(Error::Conflict(format!(
            "the name {name:?} is taken by volume {}",
            existing.public_id()
        ))),
    }
}

fn show_opts(opts: &BTreeMap<String, String>) -> String {
    if opts.is_empty() {
        return "none".to_string();
    }
    opts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}
