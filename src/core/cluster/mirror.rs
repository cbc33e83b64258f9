//! The registry mirrored into this host's store: a row for every cluster
//! volume, made, closed or trashed as the watch reports. Nothing is ever
//! destroyed because a record is merely absent from a full read (etcd
//! restored from an old snapshot, or wiped, would otherwise empty every
//! host): only an observed removal moves bytes to a trash, and a volume
//! with bytes here that the registry no longer knows is marked, for its
//! operator to decide.

use std::collections::{BTreeMap, HashSet};

use super::{Ballast, Leave};
use crate::cluster::{Change, Record};
use crate::core::locks::Key;
use crate::units::now_ms;
use crate::volume::{Membership, State, Transitioning, Volume};

/// Said on a volume whose bytes are here and whose record is gone.
const ORPHANED: &str = "not in the cluster's registry any more (removed while this host was \
     away, or etcd lost its data); its bytes are kept here: take a backup, then remove it";

impl Ballast {
    pub(super) async fn apply(&self, change: Change) {
        match change {
            Change::All { records, unreadable, moves } => {
                let keys: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
                let unreadable: HashSet<&str> = unreadable.iter().map(String::as_str).collect();
                for v in self.list() {
                    let Some(m) = &v.cluster else { continue };
                    if keys.contains(m.key.as_str()) || unreadable.contains(v.name.as_str()) {
                        continue;
                    }
                    self.unregistered(&v).await;
                }
                for r in records {
                    self.mirror(r).await;
                }
                for (name, to) in moves {
                    self.move_asked(name, to);
                }
            }
            Change::Put(r) => self.mirror(r).await,
            Change::Move { name, to } => self.move_asked(name, to),
            Change::Deleted { name, key } => self.gone_elsewhere(&name, &key).await,
            Change::Holders { name, revision, .. } => self.holders_changed(&name, revision).await,
        }
    }

    /// Makes the registry's volume known here. A row of an older volume
    /// of that name that cannot be closed yet (mounted here) stays, and
    /// the new one is mirrored when it goes.
    async fn mirror(&self, r: Record) {
        self.note_archive(&r);
        if let Ok(v) = self.get(&r.name) {
            match &v.cluster {
                Some(m) if m.key == r.key => {
                    if v.transitioning_message == ORPHANED {
                        self.registered_again(&v.name).await;
                    }
                    if m.home != r.home {
                        self.rehome(&r).await;
                    }
                    return;
                }
                Some(m) => {
                    let key = m.key.clone();
                    self.gone_elsewhere(&r.name, &key).await;
                    if self.get(&r.name).is_ok() {
                        tracing::warn!(volume = %r.name, "cluster: an older volume of this name is still mounted here; the new one is not mirrored yet");
                        return;
                    }
                }
                None => {
                    tracing::warn!(volume = %r.name, home = %r.home, "cluster: a volume of this host alone has the name of a cluster volume; it stays");
                    return;
                }
            }
        }
        let _claim = self.inner.locks.lock(Key::Name(r.name.clone())).await;
        if self.get(&r.name).is_ok() {
            // Made here meanwhile (this host's own create) or mirrored.
            return;
        }
        let v = Volume {
            id: 0,
            name: r.name.clone(),
            description: r.description.clone(),
            driver_opts: r.opts.clone(),
            pool: r.pool.clone(),
            // A volume that moved here and waits for its first Mount
            // (this host's state was lost meanwhile) is restored then.
            state: State::Inactive,
            transitioning: Transitioning::No,
            transitioning_message: String::new(),
            created_ms: r.created_ms,
            removed_ms: None,
            size_bytes: r.size_bytes,
            used_bytes: 0,
            mounts: BTreeMap::new(),
            host_path: None,
            fill_from: None,
            written_ms: now_ms(),
            schedule: Default::default(),
            archived_in: None,
            cluster: Some(Membership { key: r.key.clone(), home: r.home.clone() }),
        };
        let mut v = v;
        if r.archive.is_some() && self.node() == Some(r.home.as_str()) {
            // Moved here while this host's state was lost: restored at
            // its first Mount.
            mark_arriving(&mut v);
        }
        let saved = self
            .blocking(move |this| {
                let mut v = v;
                v.id = this.inner.store.insert(&v)?;
                this.inner.store.save(&v)?;
                Ok(v)
            })
            .await;
        match saved {
            Ok(v) => {
                tracing::info!(volume = %v.name, home = %r.home, "cluster: volume mirrored");
                self.publish(v);
            }
            Err(e) => tracing::warn!(volume = %r.name, error = %e, "cluster: cannot mirror"),
        }
    }

    /// Another host removed the volume `name` with `key` (an observed
    /// delete): its bytes go to this host's trash if they are this
    /// host's to keep (a local pool's home), else the row is closed.
    async fn gone_elsewhere(&self, name: &str, key: &str) {
        let Ok((guard, v)) = self.lock_live(name).await else { return };
        let Some(m) = &v.cluster else { return };
        if !key.is_empty() && m.key != key {
            return;
        }
        if v.mount_count() > 0 {
            tracing::warn!(
                volume = name,
                "cluster: removed elsewhere while mounted here; kept until unmounted"
            );
            return;
        }
        let done = match self.trash_for(&v, false) {
            Leave::Trash => self.trash_locked(&v, guard).await,
            Leave::Close => self.close_row(&v).await,
        };
        match done {
            Ok(_) => tracing::info!(volume = name, "cluster: removed on another host"),
            Err(e) => tracing::warn!(volume = name, error = %e, "cluster: cannot follow a removal"),
        }
    }

    /// A row the registry does not have, seen in a full read. One whose
    /// bytes are elsewhere is closed (nothing is lost here); one whose
    /// bytes are here is marked and kept.
    async fn unregistered(&self, v: &Volume) {
        let Ok((_guard, v)) = self.lock_live(&v.name).await else { return };
        if v.cluster.is_none() {
            return;
        }
        if !self.bytes_here(&v) {
            if let Err(e) = self.close_row(&v).await {
                tracing::warn!(volume = %v.name, error = %e, "cluster: cannot close a row");
            }
            return;
        }
        if v.transitioning_message == ORPHANED {
            return;
        }
        let mut marked = (*v).clone();
        marked.transitioning = Transitioning::Error;
        marked.transitioning_message = ORPHANED.into();
        match self.save(marked).await {
            Ok(marked) => {
                tracing::warn!(volume = %marked.name, "cluster: {ORPHANED}");
                self.publish(marked);
            }
            Err(e) => tracing::warn!(volume = %v.name, error = %e, "cluster: cannot mark a volume"),
        }
    }
}

impl Ballast {
    /// The registry has a volume marked as missing from it again.
    async fn registered_again(&self, name: &str) {
        let Ok((_guard, v)) = self.lock_live(name).await else { return };
        if v.transitioning_message != ORPHANED {
            return;
        }
        let mut back = (*v).clone();
        back.transitioning = Transitioning::No;
        back.transitioning_message.clear();
        if let Ok(back) = self.save(back).await {
            self.publish(back);
        }
    }
}

/// The registry's record of a volume made here.
pub(super) fn record_of(v: &Volume, m: &Membership) -> Record {
    Record {
        name: v.name.clone(),
        key: m.key.clone(),
        pool: v.pool.clone(),
        opts: v.driver_opts.clone(),
        description: v.description.clone(),
        size_bytes: v.size_bytes,
        home: m.home.clone(),
        created_ms: v.created_ms,
        archive: None,
    }
}

/// Said on a volume that moved here until its archive is restored.
const ARRIVING: &str = "moved here from another host; its first Mount restores it from the \
     backup the cluster's registry names";

/// Marks `v` as moved here, on disk, until its archive is found among
/// this host's backups: a Mount never starts it empty meanwhile.
pub(super) fn mark_arriving(v: &mut Volume) {
    v.state = State::Requested;
    v.archived_in = None;
    v.transitioning = Transitioning::Error;
    v.transitioning_message = ARRIVING.into();
}

/// Whether `v` moved here and waits for its archive to be found.
pub(super) fn arriving(v: &Volume) -> bool {
    v.state == State::Requested
        && v.archived_in.is_none()
        && v.transitioning == Transitioning::Error
        && v.transitioning_message == ARRIVING
}
