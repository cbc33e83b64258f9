//! The domain core: volumes in pools, and the operations on them.
//!
//! [`Ballast`] is a cheap-clone handle (an `Arc`) shared by every adapter.
//! Reads (Get, Path, List) are answered from an in-memory map and never
//! wait for storage work; each change to a volume holds that volume's
//! operation lock, writes the metadata store, then publishes the new
//! record to the map. One file per operation.

mod actions;
mod backups;
mod cluster;
mod create;
mod expose;
mod fill;
mod jobs;
mod locks;
mod mount;
mod recover;
mod remove;
mod schedule;
mod snapshots;

pub use actions::{Action, Given, Offers};
pub use cluster::LeaseState;
pub use create::IfTaken;
pub use snapshots::Holds;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use locks::{Guard, Key, Locks};

use crate::config::Config;
use crate::pool::{Backend, Pool, Scope};
use crate::public_id::Kind;
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::volume::{State, Volume, validate_name};
use crate::{Error, Result};

/// The shared handle to everything ballast manages.
#[derive(Clone)]
pub struct Ballast {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    pools: BTreeMap<String, Pool>,
    default_pool: String,
    trash_retention: Duration,
    /// Where `-o path=` volumes may be, symlinks resolved.
    host_path_roots: Vec<PathBuf>,
    /// Name → live volume. A `std` RwLock: holders only clone an `Arc` in
    /// or out and never await, so Get/Path/List never queue behind a slow
    /// Create or Mount (those hold only the per-name lock below).
    live: RwLock<HashMap<String, Arc<Volume>>>,
    /// Operation locks (by volume id, and by name while one is claimed)
    /// and read leases; see `locks.rs`.
    locks: Arc<Locks>,
    /// Pool → bytes promised to loop volumes being created: the capacity
    /// check and the promise are one step under this lock, so parallel
    /// creates cannot overcommit a pool between them.
    reserved: Mutex<HashMap<String, u64>>,
    /// Id → snapshot not removed; the same kind of lock as `live`.
    snapshots: RwLock<BTreeMap<i64, Arc<Snapshot>>>,
    /// Backup targets by name, their repositories opened on first use.
    targets: BTreeMap<String, backups::Target>,
    /// Id → backup not removed; the same kind of lock as `live`.
    backups: RwLock<BTreeMap<i64, Arc<crate::backup::Backup>>>,
    /// Where generated repository keys live.
    state_dir: PathBuf,
    /// Where Docker is handed mounted volumes (`--mount-root`), if set.
    exposed: Option<expose::Exposed>,
    /// This state directory's identity in backups (see `host_id`).
    host_id: String,
    /// How long snapshots take (exported as a metric; shares its state
    /// with every clone).
    snapshot_seconds: prometheus_client::metrics::histogram::Histogram,
    /// The cluster this host joined, if any, and what the core keeps of
    /// it (`core/cluster/`).
    cluster: cluster::State,
    /// Woken at every publication, for whoever waits on a job (`jobs.rs`).
    published: jobs::Published,
}

/// The configured host-path roots with their symlinks resolved; each must
/// exist. Checked by `ballast config check` too.
pub fn host_path_roots(config: &Config) -> std::result::Result<Vec<PathBuf>, String> {
    let real = |root: &PathBuf| {
        std::fs::canonicalize(root)
            .map_err(|e| format!("config key `host_path_roots`: {}: {e}", root.display()))
    };
    config.host_path_roots.iter().map(real).collect()
}

impl Ballast {
    /// Opens the metadata store and the pools, rolls back creations that
    /// were never acknowledged, and loads every live volume into memory.
    pub fn open(config: &Config, state_dir: &Path) -> std::result::Result<Ballast, String> {
        Ballast::open_exposing(config, state_dir, None)
    }

    /// [`Ballast::open`], handing Docker mounted volumes as binds under
    /// `mount_root` (see `expose.rs`), put back in line with the recorded
    /// mounts before this returns.
    pub fn open_exposing(
        config: &Config,
        state_dir: &Path,
        mount_root: Option<&Path>,
    ) -> std::result::Result<Ballast, String> {
        let exposed = mount_root.map(expose::Exposed::open).transpose()?;
        let store = Store::open(&state_dir.join("ballast.db")).map_err(|e| e.to_string())?;
        let volumes = store.load().map_err(|e| e.to_string())?;
        let mut pools = BTreeMap::new();
        for pc in &config.pools {
            let known = volumes.iter().any(|v| v.pool == pc.name);
            pools.insert(pc.name.clone(), Pool::open(pc.clone(), known)?);
        }
        let host_path_roots = host_path_roots(config)?;
        let recover::Recovered { live, snapshots, backups } =
            recover::recover(&store, &pools, volumes)?;
        let ballast = Ballast {
            inner: Arc::new(Inner {
                store,
                pools,
                default_pool: config.default_pool().name.clone(),
                trash_retention: config.trash_retention,
                host_path_roots,
                live: RwLock::new(live),
                locks: Arc::new(Locks::default()),
                reserved: Mutex::new(HashMap::new()),
                snapshots: RwLock::new(snapshots),
                targets: config
                    .backup_targets
                    .iter()
                    .map(|t| (t.name.clone(), backups::Target::new(t.clone())))
                    .collect(),
                backups: RwLock::new(backups),
                state_dir: state_dir.to_path_buf(),
                exposed,
                host_id: host_id(state_dir)?,
                snapshot_seconds: prometheus_client::metrics::histogram::Histogram::new(
                    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 20),
                ),
                cluster: cluster::State::default(),
                published: jobs::Published::default(),
            }),
        };
        ballast.restore_exposed();
        Ok(ballast)
    }

    /// A live volume by name, from memory.
    pub fn get(&self, name: &str) -> Result<Arc<Volume>> {
        validate_name(name)?;
        self.live_read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no volume named {name:?}")))
    }

    /// A volume by id (`1v7`) or name: live ones first, then the newest
    /// removed one of that name (for restore and purge).
    pub fn find(&self, reference: &str) -> Result<Arc<Volume>> {
        if let Some(id) = Kind::Volume.parse(reference) {
            return self.volume_by_id(id);
        }
        validate_name(reference)?;
        if let Some(v) = self.live_read().get(reference) {
            return Ok(v.clone());
        }
        let removed = self.inner.store.in_state(State::Removed)?;
        removed
            .into_iter()
            .find(|v| v.name == reference)
            .map(Arc::new)
            .ok_or_else(|| Error::NotFound(format!("no volume named or with id {reference:?}")))
    }

    /// A volume by row id, whatever its state.
    pub fn volume_by_id(&self, id: i64) -> Result<Arc<Volume>> {
        if let Some(v) = self.live_read().values().find(|v| v.id == id) {
            return Ok(v.clone());
        }
        // A live row that memory does not have yet is a create in flight:
        // not there until it is published.
        self.inner
            .store
            .get(id)?
            .filter(|v| v.state != State::Creating && !v.state.is_live())
            .map(Arc::new)
            .ok_or_else(|| Error::NotFound(format!("no volume with id {}", Kind::Volume.id(id))))
    }

    /// Volumes in the trash and the tombstones of purged ones.
    pub fn removed_and_purged(&self) -> Result<Vec<Arc<Volume>>> {
        let mut all = self.removed()?;
        let purged = self.inner.store.in_state(State::Purged)?;
        all.extend(purged.into_iter().map(Arc::new));
        Ok(all)
    }

    /// Volumes in the trash (removed, not yet purged), newest first.
    pub fn removed(&self) -> Result<Vec<Arc<Volume>>> {
        Ok(self.inner.store.in_state(State::Removed)?.into_iter().map(Arc::new).collect())
    }

    /// The histogram of snapshot durations, for the metrics registry.
    pub fn snapshot_durations(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.inner.snapshot_seconds.clone()
    }

    /// How long a removed volume stays in the trash before its purge.
    pub fn trash_retention(&self) -> Duration {
        self.inner.trash_retention
    }

    /// A resource's UUID (Rancher's `uuid`): stable, since it is derived
    /// from this state directory's random identity, the kind and the row
    /// id (never reused), and so also unique across hosts. An RFC 9562
    /// version 8 (custom) UUID of SHA-256 bits.
    pub fn uuid(&self, kind: &str, id: i64) -> String {
        uuid_of(&self.inner.host_id, kind, id)
    }

    /// The pools, by name.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.inner.pools.values()
    }

    /// How many volumes (live or in the trash) each pool holds.
    pub fn pool_volume_count(&self, pool: &str) -> usize {
        self.live_read().values().filter(|v| v.pool == pool).count()
    }

    /// What the pool's live volumes reserve: the sum of their sizes (a
    /// loop pool's images, which `overcommit` bounds).
    pub fn pool_reserved_bytes(&self, pool: &str) -> u64 {
        self.live_read().values().filter(|v| v.pool == pool).filter_map(|v| v.size_bytes).sum()
    }

    /// Every live volume, from memory, ordered by name.
    pub fn list(&self) -> Vec<Arc<Volume>> {
        let mut all: Vec<_> = self.live_read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Where the volume's files are on this host.
    pub fn mountpoint(&self, v: &Volume) -> Option<PathBuf> {
        if let Some(path) = &v.host_path {
            return Some(path.clone());
        }
        let pool = self.inner.pools.get(&v.pool)?;
        pool.backend().ok().map(|b| b.mountpoint(&v.storage_key()))
    }

    /// `global` when any pool is shared between hosts.
    pub fn scope(&self) -> Scope {
        if self.cluster().is_some()
            || self.inner.pools.values().any(|p| p.config.scope == Scope::Global)
        {
            Scope::Global
        } else {
            Scope::Local
        }
    }

    fn live_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Volume>>> {
        // Writers only swap Arcs; a panic cannot leave the map half-changed.
        self.inner.live.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `v` what readers see: inserted when live, removed otherwise.
    /// Only ever touches `v`'s own entry: a removed volume shares its name
    /// with the live one that took it since.
    fn publish(&self, v: Volume) -> Arc<Volume> {
        let v = Arc::new(v);
        let mut live = self.inner.live.write().unwrap_or_else(|p| p.into_inner());
        if v.state.is_live() {
            live.insert(v.name.clone(), v.clone());
        } else if live.get(&v.name).is_some_and(|cur| cur.id == v.id) {
            live.remove(&v.name);
        }
        drop(live);
        self.inner.published.wake();
        v
    }

    /// Locks the live volume `name` and returns it as it is under the lock.
    async fn lock_live(&self, name: &str) -> Result<(Guard, Arc<Volume>)> {
        loop {
            let seen = self.get(name)?;
            let guard = self.inner.locks.lock(Key::Volume(seen.id)).await;
            let now = self.get(name)?;
            if now.id == seen.id {
                return Ok((guard, now));
            }
            // Removed meanwhile and the name taken by another: lock that one.
        }
    }

    /// Locks the volume `reference` (id or name, live or removed) and
    /// returns its record as it is under the lock.
    async fn lock_ref(&self, reference: &str) -> Result<(Guard, Arc<Volume>)> {
        let seen = self.find(reference)?;
        let guard = self.inner.locks.lock(Key::Volume(seen.id)).await;
        Ok((guard, self.volume_by_id(seen.id)?))
    }

    /// How many operation locks exist right now (bounded by the
    /// operations in flight).
    pub fn lock_entries(&self) -> usize {
        self.inner.locks.len()
    }

    fn pool(&self, name: &str) -> Result<&Pool> {
        self.inner.pools.get(name).ok_or_else(|| {
            Error::InvalidState(format!(
                "pool {name:?} is not configured on this host; configured pools: {}",
                self.pool_names()
            ))
        })
    }

    /// Where a volume's data is: its pool's backend or, for a host-path
    /// volume, a view of the host directory whose snapshots live in the
    /// pool.
    fn storage(&self, v: &Volume) -> Result<Storage<'_>> {
        let pool = self.pool(&v.pool)?;
        match &v.host_path {
            None => Ok(Storage::Pool(pool.backend()?)),
            Some(path) => {
                let (root, rel) = self.host_root(path)?;
                pool.backend()?
                    .host_dir(root, rel)
                    .map(Storage::Host)
                    .map_err(|e| Error::internal(format!("host path {}", path.display()), e))
            }
        }
    }

    /// The configured host-path root holding `path`, and the rest of it.
    fn host_root<'p>(&self, path: &'p Path) -> Result<(&Path, &'p Path)> {
        self.inner
            .host_path_roots
            .iter()
            .find_map(|r| Some((r.as_path(), path.strip_prefix(r).ok()?)))
            .filter(|(_, rel)| !rel.as_os_str().is_empty())
            .ok_or_else(|| {
                Error::InvalidState(format!(
                    "host path {} is no longer inside host_path_roots in the config",
                    path.display()
                ))
            })
    }

    fn pool_names(&self) -> String {
        self.inner.pools.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Runs storage or metadata work on a blocking thread.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Ballast) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| Error::internal("background task", e))?
    }
}

/// The random identity of this state directory, made on first use:
/// backups carry it, since volume ids are only unique within one state
/// directory (two hosts sharing a target both have a `1v1`).
fn host_id(state_dir: &Path) -> std::result::Result<String, String> {
    let path = state_dir.join("host-id");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = state_dir.join("host-id.tmp");
    std::fs::write(&tmp, format!("{id}\n")).map_err(err)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(id)
}

/// The UUID of row `id` of `kind` in the state directory `host_id`.
fn uuid_of(host_id: &str, kind: &str, id: i64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("ballast uuid\0{host_id}\0{kind}\0{id}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // the RFC's variant
    let hex = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

impl Ballast {
    /// Tries again to open pools that were unavailable (their filesystem
    /// not mounted yet). Returns the names of those now available.
    pub fn attach_pools(&self) -> Vec<String> {
        let mut attached = Vec::new();
        for pool in self.inner.pools.values() {
            if pool.backend().is_ok() {
                continue;
            }
            match pool.attach() {
                Ok(true) => {
                    tracing::info!(pool = pool.name(), "pool is available now");
                    attached.push(pool.name().to_string());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(pool = pool.name(), error = %e, "pool still unavailable"),
            }
        }
        attached
    }
}

/// A volume's storage; see [`Ballast::storage`].
enum Storage<'a> {
    Pool(&'a (dyn Backend + 'a)),
    Host(Box<dyn Backend>),
}

impl<'a> std::ops::Deref for Storage<'a> {
    type Target = dyn Backend + 'a;

    fn deref(&self) -> &Self::Target {
        match self {
            Storage::Pool(b) => *b,
            Storage::Host(b) => b.as_ref(),
        }
    }
}

/// The mount IDs of a volume, for messages.
fn mount_list(mounts: &BTreeMap<String, u32>) -> String {
    mounts.keys().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Transitioning;

    fn config() -> Config {
        Config::parse("", Path::new("/unused")).unwrap()
    }

    fn open(state: &Path) -> Ballast {
        let mut c = config();
        c.pools[0].path = state.join("pool");
        Ballast::open(&c, state).unwrap()
    }

    #[test]
    fn a_uuid_survives_a_restart_and_differs_per_kind_row_and_state_directory() {
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let before = open(dir.path()).uuid("volume", 7);
        let after = open(dir.path()).uuid("volume", 7);
        assert_eq!(before, after, "the same after a reopen");
        let elsewhere = open(other.path()).uuid("volume", 7);
        let b = open(dir.path());
        let all = [&before, &b.uuid("volume", 8), &b.uuid("snapshot", 7), &elsewhere];
        let distinct: std::collections::HashSet<&String> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        // 8-4-4-4-12 hex digits, version 8, the RFC 9562 variant.
        let groups: Vec<usize> = before.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{before}");
        assert!(before.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{before}");
        assert_eq!(&before[14..15], "8", "{before}");
        assert!("89ab".contains(&before[19..20]), "{before}");
    }

    #[test]
    fn start_up_rolls_back_a_create_interrupted_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        // What a crash between "record written" and "storage made" leaves.
        let store = Store::open(&dir.path().join("ballast.db")).unwrap();
        let mut v = Volume {
            id: 0,
            name: "half".into(),
            description: String::new(),
            driver_opts: BTreeMap::new(),
            pool: "default".into(),
            state: State::Creating,
            transitioning: Transitioning::No,
            transitioning_message: String::new(),
            created_ms: 0,
            removed_ms: None,
            size_bytes: None,
            used_bytes: 0,
            mounts: BTreeMap::new(),
            host_path: None,
            fill_from: None,
            written_ms: 0,
            schedule: Default::default(),
            archived_in: None,
            cluster: None,
        };
        v.id = store.insert(&v).unwrap();
        let storage = dir.path().join("pool/volumes").join(v.storage_key());
        std::fs::create_dir(&storage).unwrap();
        std::fs::write(storage.join("partial"), b"x").unwrap();
        drop(store);

        let b = open(dir.path());
        assert!(b.get("half").is_err(), "never acknowledged, so not listed");
        assert!(!storage.exists(), "its storage is gone");
        assert!(Store::open(&dir.path().join("ballast.db")).unwrap().get(v.id).unwrap().is_none());
    }

    #[tokio::test]
    async fn start_up_clears_what_a_restore_into_a_requested_volume_left() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let v = b.create("r", BTreeMap::new()).await.unwrap();
        b.deallocate("r", true).await.unwrap();
        drop(b);
        // What kill -9 early in a restore into it leaves: the restore
        // marked, the storage allocated and still empty.
        let store = Store::open(&dir.path().join("ballast.db")).unwrap();
        let mut cut = store.get(v.id).unwrap().unwrap();
        cut.transitioning = Transitioning::Yes;
        cut.transitioning_message = "restoring from backup 1b1 (r-1b1): starting".into();
        store.save(&cut).unwrap();
        drop(store);
        let storage = dir.path().join("pool/volumes").join(v.storage_key());
        std::fs::create_dir(&storage).unwrap();

        let b = open(dir.path());
        assert!(!storage.exists(), "the interrupted restore's directory is left");
        let r = b.get("r").unwrap();
        assert_eq!(r.state, State::Requested);
        assert_eq!(r.transitioning, Transitioning::Error);
        assert!(r.transitioning_message.contains("interrupted"), "{}", r.transitioning_message);
    }

    #[tokio::test]
    async fn the_name_is_free_again_after_remove_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let first = b.create("db", BTreeMap::new()).await.unwrap();
        b.remove("db").await.unwrap();
        let second = b.create("db", BTreeMap::new()).await.unwrap();
        assert!(second.id > first.id);
        assert_ne!(b.mountpoint(&first), b.mountpoint(&second));
        // The removed one's data is still there (trash) until purged.
        assert!(b.mountpoint(&first).unwrap().exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_unmount_measures_the_volume_after_answering() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.create("quiet", BTreeMap::new()).await.unwrap();
        let mp = b.mount("quiet", "c1").await.unwrap();
        std::fs::write(mp.join("data"), vec![7u8; 3 << 20]).unwrap();
        b.unmount("quiet", "c1").await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while b.get("quiet").unwrap().used_bytes < 3 << 20 {
            assert!(std::time::Instant::now() < deadline, "never measured after the Unmount");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Saved, not only shown: a restart reads the same.
        let used = b.get("quiet").unwrap().used_bytes;
        drop(b);
        assert_eq!(open(dir.path()).get("quiet").unwrap().used_bytes, used);
    }

    #[tokio::test]
    async fn removed_volumes_are_purged_once_the_retention_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.pools[0].path = dir.path().join("pool");
        // Long enough that a loaded machine cannot age it between the
        // remove and the first purge.
        c.trash_retention = Duration::from_secs(2);
        let b = Ballast::open(&c, dir.path()).unwrap();
        let v = b.create("tmp", BTreeMap::new()).await.unwrap();
        let data = b.mountpoint(&v).unwrap();
        b.remove("tmp").await.unwrap();
        assert_eq!(b.purge_expired().await.unwrap(), 0, "too young to purge");
        assert!(data.exists());
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert_eq!(b.purge_expired().await.unwrap(), 1);
        assert!(!data.exists());
        assert_eq!(b.purge_expired().await.unwrap(), 0, "purged once");
        let tomb = b.inner.store.get(v.id).unwrap().unwrap();
        assert_eq!(tomb.state, State::Purged, "the record stays as a tombstone");
    }

    #[tokio::test]
    async fn a_leftover_under_a_fresh_key_is_cleared_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        // What a power cut can leave: storage whose record never hit the disk.
        let leftover = dir.path().join("pool/volumes/v1");
        std::fs::create_dir(&leftover).unwrap();
        std::fs::write(leftover.join("junk"), b"x").unwrap();
        let v = b.create("fresh", BTreeMap::new()).await.unwrap();
        assert_eq!(v.storage_key(), "v1");
        assert!(!leftover.join("junk").exists());
    }
}
