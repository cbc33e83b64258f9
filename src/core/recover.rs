//! Start-up recovery: what a crash left half-done is rolled back or
//! marked before anything is served (docs/design.md, "Volume states").
//! Creates never acknowledged are undone, jobs cut short are marked so
//! that their users retry, staged copies and backups' own snapshots go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::backup::Backup;
use crate::pool::Pool;
use crate::snapshot::{SnapState, Snapshot};
use crate::store::Store;
use crate::volume::{State, Transitioning, Volume};

/// The records served from memory, after recovery.
pub(super) struct Recovered {
    pub live: HashMap<String, Arc<Volume>>,
    pub snapshots: BTreeMap<i64, Arc<Snapshot>>,
    pub backups: BTreeMap<i64, Arc<Backup>>,
}

/// Recovers the stored `volumes` and their snapshots and backups.
pub(super) fn recover(
    store: &Store,
    pools: &BTreeMap<String, Pool>,
    volumes: Vec<Volume>,
) -> Result<Recovered, String> {
    report_unknown_entries(pools, &volumes);
    let mut live = HashMap::new();
    for v in volumes {
        match v.state {
            State::Creating => {
                // Never acknowledged to anyone: undo it.
                let backend = pools.get(&v.pool).and_then(|p| p.backend().ok());
                if let Some(backend) = backend.filter(|_| v.host_path.is_none()) {
                    backend.destroy(&v.storage_key()).map_err(|e| {
                        format!("rolling back unfinished create of volume {:?}: {e}", v.name)
                    })?;
                }
                store.delete(v.id).map_err(|e| e.to_string())?;
                tracing::warn!(volume = %v.name, "rolled back a create interrupted by a crash");
            }
            s if s.is_live() => {
                let mut v = v;
                if v.state == State::Requested && v.host_path.is_none() {
                    clear_requested(pools, &v);
                }
                if v.transitioning == Transitioning::Yes && v.fill_from.is_some() {
                    // A fill cut by a crash: `resume_fills` starts it
                    // again from scratch; until then it cannot mount.
                    v.transitioning_message =
                        "filling: starting again after a restart of the daemon".into();
                } else if v.transitioning == Transitioning::Yes {
                    // A job (a revert, a restore) died with the daemon;
                    // its storage work is atomic, so say so and let the
                    // user retry. A restore's staged copy goes.
                    if let Some(Ok(backend)) = pools.get(&v.pool).map(|p| p.backend()) {
                        let staged = v.restore_staging_key();
                        if let Err(e) = backend.delete_snapshot(&staged) {
                            tracing::warn!(volume = %v.name, error = %e, "cannot remove a staged restore");
                        }
                    }
                    v.transitioning = Transitioning::Error;
                    v.transitioning_message = format!(
                        "interrupted by a restart of the daemon ({}); the volume holds its \
                         content from before or after, never a mix: run it again",
                        v.transitioning_message
                    );
                    store.save(&v).map_err(|e| e.to_string())?;
                }
                if !pools.contains_key(&v.pool) {
                    tracing::warn!(volume = %v.name, pool = %v.pool, "volume's pool is not configured");
                }
                live.insert(v.name.clone(), Arc::new(v));
            }
            _ => {}
        }
    }
    let mut snapshots = BTreeMap::new();
    for mut snap in store.load_snapshots().map_err(|e| e.to_string())? {
        if snap.state == SnapState::Creating {
            // Its half-copy was in the pool's staging area, cleared above.
            snap.state = SnapState::Error;
            snap.message = "interrupted by a restart of the daemon".into();
            store.save_snapshot(&snap).map_err(|e| e.to_string())?;
        }
        snapshots.insert(snap.id, Arc::new(snap));
    }
    let mut backups = BTreeMap::new();
    for mut b in store.load_backups().map_err(|e| e.to_string())? {
        if b.state == crate::backup::BackupState::Creating {
            // restic writes a snapshot last: an interrupted backup left
            // only unreferenced data, which the next prune removes.
            b.state = crate::backup::BackupState::Error;
            b.message = "interrupted by a restart of the daemon; take it again".into();
            store.save_backup(&b).map_err(|e| e.to_string())?;
            // The snapshot taken for it (a full copy on a dir pool).
            let temporary = b.snapshot_name();
            snapshots.retain(|_, s: &mut Arc<Snapshot>| {
                let drop = s.name == temporary && b.snapshot_id.is_none();
                if drop {
                    remove_leftover_snapshot(store, pools, &live, s);
                }
                !drop
            });
        }
        backups.insert(b.id, Arc::new(b));
    }
    tracing::info!(
        volumes = live.len(),
        snapshots = snapshots.len(),
        backups = backups.len(),
        pools = pools.len(),
        "metadata loaded"
    );
    reattach(pools, &live);
    Ok(Recovered { live, snapshots, backups })
}

/// Deletes what is stored under a requested volume's key: it has no
/// storage of its own, so anything there is what a restore into it (or a
/// deallocate) cut by a crash left, if only an empty directory.
fn clear_requested(pools: &BTreeMap<String, Pool>, v: &Volume) {
    let Some(Ok(backend)) = pools.get(&v.pool).map(|p| p.backend()) else { return };
    let key = v.storage_key();
    match backend
        .exists(&key)
        .and_then(|there| if there { backend.destroy(&key).map(|()| true) } else { Ok(false) })
    {
        Ok(false) => {}
        Ok(true) => {
            tracing::warn!(volume = %v.name, "removed what an interrupted restore left in a requested volume")
        }
        Err(e) => {
            tracing::warn!(volume = %v.name, error = %e, "cannot remove what an interrupted restore left")
        }
    }
}

/// Removes a snapshot that an interrupted job took for itself.
fn remove_leftover_snapshot(
    store: &Store,
    pools: &BTreeMap<String, Pool>,
    live: &HashMap<String, Arc<Volume>>,
    s: &Snapshot,
) {
    let pool = live.values().find(|v| v.id == s.volume_id).and_then(|v| pools.get(&v.pool));
    let deleted = match pool.map(|p| p.backend()) {
        Some(Ok(b)) => b.delete_snapshot(&s.storage_key()).map_err(|e| e.to_string()),
        _ => Err("its pool is not available".into()),
    };
    let mut s = s.clone();
    s.state = SnapState::Removed;
    match deleted.and_then(|()| store.save_snapshot(&s).map_err(|e| e.to_string())) {
        Ok(()) => {
            tracing::info!(snapshot = %s.public_id(), "removed the snapshot of an interrupted backup")
        }
        Err(e) => {
            tracing::warn!(snapshot = %s.public_id(), error = %e, "cannot remove the snapshot of an interrupted backup")
        }
    }
}

/// Brings what is attached in line with the store: every active volume
/// attached (after a daemon crash its mount is still there; after a host
/// restart it is mounted again here, before Docker asks for it), and no
/// inactive one (a crash between attaching and recording the mount).
fn reattach(pools: &BTreeMap<String, Pool>, live: &HashMap<String, Arc<Volume>>) {
    for v in live.values().filter(|v| v.host_path.is_none()) {
        let Some(backend) = pools.get(&v.pool).and_then(|p| p.backend().ok()) else { continue };
        let result = match v.state {
            State::Active => backend.activate(&v.storage_key()).map(|_| ()),
            State::Inactive => backend.deactivate(&v.storage_key()),
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(volume = %v.name, state = v.state.as_str(), error = %e, "cannot reconcile the volume's attachment");
        }
    }
}

/// Logs entries of a pool that no volume claims. They are left alone:
/// they may be someone's data.
fn report_unknown_entries(pools: &BTreeMap<String, Pool>, volumes: &[Volume]) {
    let claimed: HashSet<(&str, String)> = volumes
        .iter()
        .filter(|v| v.host_path.is_none())
        .map(|v| (v.pool.as_str(), v.storage_key()))
        .collect();
    for pool in pools.values() {
        let Ok(backend) = pool.backend() else { continue };
        let keys = match backend.stored_keys() {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(pool = pool.name(), error = %e, "cannot list the pool");
                continue;
            }
        };
        for key in keys {
            if !claimed.contains(&(pool.name(), key.clone())) {
                tracing::warn!(pool = pool.name(), entry = %key, "unknown entry in the pool's volumes; left in place");
            }
        }
    }
}
