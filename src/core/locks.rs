//! Operation locks and read leases.
//!
//! Every change to a volume holds that volume's lock, keyed by its id
//! (names are reused after a removal, ids never are, so purging an old
//! volume never blocks the live one that took its name). Claiming a name
//! (create, restore under a name) also holds the name's lock, always taken
//! before any volume lock, so two claims of one name are serialized and no
//! two tasks wait for each other.
//!
//! Entries live only while someone holds or waits for them: the map's
//! size is bounded by the operations in flight, whatever names a client
//! sends (a flood of Unmounts of invented names leaves nothing behind).
//!
//! A long job (a fill, a revert) does not hold the lock while it copies:
//! it marks the volume `transitioning` under the lock, and every writer
//! refuses or waits on that mark; it takes the lock again to finish. A
//! job that *reads* another volume or a snapshot (a fill) takes a read
//! lease on it, which keeps revert, remove and purge of the source away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// A volume name being claimed.
    Name(String),
    /// A volume, by row id.
    Volume(i64),
}

/// A lock and how many tasks hold it or wait for it.
#[derive(Default)]
struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    users: usize,
}

#[derive(Default)]
pub(super) struct Locks {
    map: Mutex<HashMap<Key, Entry>>,
    /// What long jobs are reading now, with how many readers.
    leases: Mutex<HashMap<Lease, u32>>,
    /// Volume id → the stop flag of the restore writing into it.
    restores: Mutex<HashMap<i64, Arc<AtomicBool>>>,
}

/// Something a job reads from, or (`Filling`) a volume a job is filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Lease {
    Volume(i64),
    Snapshot(i64),
    Filling(i64),
    /// A backup being restored from (it cannot be removed meanwhile).
    Backup(i64),
}

/// A held operation lock; dropping it releases the lock and forgets the
/// entry when nobody else holds or waits for it.
pub(super) struct Guard {
    // Fields drop in order: the lock is released before the use ends.
    _held: OwnedMutexGuard<()>,
    _user: User,
}

/// One holder or waiter of an entry. Made before waiting, so that a
/// waiter given up half-way (its request dropped) still counts itself out.
struct User {
    locks: Arc<Locks>,
    key: Key,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&self.key) {
            e.users -= 1;
            if e.users == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Locks {
    pub(super) async fn lock(self: &Arc<Self>, key: Key) -> Guard {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let e = map.entry(key.clone()).or_default();
            e.users += 1;
            e.lock.clone()
        };
        let user = User { locks: self.clone(), key };
        let held = lock.lock_owned().await;
        Guard { _held: held, _user: user }
    }

    /// How many lock entries exist (for tests and metrics).
    pub(super) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Takes a read lease, released when the returned value is dropped.
    pub(super) fn lease(self: &Arc<Self>, what: Lease) -> LeaseGuard {
        *self.leases().entry(what).or_insert(0) += 1;
        LeaseGuard { locks: self.clone(), what }
    }

    pub(super) fn leased(&self, what: Lease) -> bool {
        self.leases().contains_key(&what)
    }

    /// The volumes being read now.
    pub(super) fn leased_volumes(&self) -> Vec<i64> {
        self.leases()
            .keys()
            .filter_map(|l| match l {
                Lease::Volume(id) => Some(*id),
                Lease::Snapshot(_) | Lease::Filling(_) | Lease::Backup(_) => None,
            })
            .collect()
    }

    /// Registers a restore into volume `volume`, cancelled by
    /// [`Locks::cancel_restore`] until the returned value is dropped.
    pub(super) fn restoring(self: &Arc<Self>, volume: i64) -> Restoring {
        let stop = Arc::new(AtomicBool::new(false));
        self.restores().insert(volume, stop.clone());
        Restoring { locks: self.clone(), volume, stop }
    }

    /// Tells the restore into `volume` to stop; false when none runs.
    pub(super) fn cancel_restore(&self, volume: i64) -> bool {
        let restores = self.restores();
        let Some(stop) = restores.get(&volume) else { return false };
        stop.store(true, Ordering::Relaxed);
        true
    }

    /// Whether a restore into `volume` runs.
    pub(super) fn is_restoring(&self, volume: i64) -> bool {
        self.restores().contains_key(&volume)
    }

    fn restores(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<AtomicBool>>> {
        self.restores.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<Lease, u32>> {
        // Holders only count up or down; a panic cannot leave it half-done.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running restore's registration and stop flag.
pub(super) struct Restoring {
    locks: Arc<Locks>,
    volume: i64,
    pub stop: Arc<AtomicBool>,
}

impl Drop for Restoring {
    fn drop(&mut self) {
        let mut restores = self.locks.restores();
        if restores.get(&self.volume).is_some_and(|s| Arc::ptr_eq(s, &self.stop)) {
            restores.remove(&self.volume);
        }
    }
}

/// A held read lease.
pub(super) struct LeaseGuard {
    locks: Arc<Locks>,
    what: Lease,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut leases = self.locks.leases();
        if let Some(n) = leases.get_mut(&self.what) {
            *n -= 1;
            if *n == 0 {
                leases.remove(&self.what);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_forgotten_once_released() {
        let locks = Arc::new(Locks::default());
        for i in 0..1000 {
            drop(locks.lock(Key::Name(format!("n{i}"))).await);
        }
        assert_eq!(locks.len(), 0);
        let held = locks.lock(Key::Volume(1)).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { drop(locks.lock(Key::Volume(1)).await) })
        };
        tokio::task::yield_now().await;
        assert_eq!(locks.len(), 1);
        drop(held);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0, "the waiter's release forgets it too");
        // A waiter given up before it got the lock counts itself out too.
        let held = locks.lock(Key::Volume(2)).await;
        let gave_up = {
            let locks = locks.clone();
            tokio::spawn(async move { drop(locks.lock(Key::Volume(2)).await) })
        };
        tokio::task::yield_now().await;
        gave_up.abort();
        let _ = gave_up.await;
        drop(held);
        assert_eq!(locks.len(), 0, "an abandoned waiter leaves nothing");
    }

    #[test]
    fn leases_count_readers() {
        let locks = Arc::new(Locks::default());
        let a = locks.lease(Lease::Volume(3));
        let b = locks.lease(Lease::Volume(3));
        drop(a);
        assert!(locks.leased(Lease::Volume(3)));
        drop(b);
        assert!(!locks.leased(Lease::Volume(3)));
        assert!(locks.leased_volumes().is_empty());
    }
}
