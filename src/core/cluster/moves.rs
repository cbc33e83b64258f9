//! Moves of `follow` volumes (docs/cluster.md, "Moves"). A cluster
//! volume in a pool of one host, made with `-o follow=true`, goes where
//! it is mounted next, through a backup in a target every host reaches:
//!
//! 1. the host that mounts it (B) waits for the holder's containers to
//!    stop, then asks in etcd (`request_move`, tied to B's lease);
//! 2. the home (A), told by its watch, refuses Mounts of it, takes a
//!    backup (none if one holds its last write), deallocates it (its
//!    bytes go), and only then writes the record with B as home and the
//!    backup as its archive (`hand_over`, only while B still asks);
//! 3. B, told by its watch, restores the archive as a deallocated volume
//!    is restored (the cold-archive path) and mounts it.
//!
//! So there is never a writable copy on both hosts, and a write is lost
//! only if it was never acknowledged. A cut at any step leaves a state
//! the next step, or the next Mount, goes on from: A resumes the steps
//! at start (the request is still in etcd), a request whose asker died
//! is gone with its lease (A keeps the volume, archived, and restores it
//! at its own next Mount), and B restores whatever record names it home.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Ballast;
use super::mirror::{self, arriving, mark_arriving};
use crate::cluster::{Archive, Error as ClusterError, Record};
use crate::volume::{State, Transitioning, Volume};
use crate::{Error, Result};

/// The option that makes a volume follow its service.
const FOLLOW: &str = "follow";

/// Whether a volume's options ask it to follow its service.
pub(in crate::core) fn follows_opts(opts: &BTreeMap<String, String>) -> bool {
    opts.get(FOLLOW).is_some_and(|v| v == "true")
}

impl Ballast {
    /// At create: `-o follow=true` only where a move can happen.
    pub(in crate::core) fn check_follow(
        &self,
        opts: &BTreeMap<String, String>,
        pool: &str,
        member: bool,
    ) -> Result<()> {
        if !follows_opts(opts) {
            return Ok(());
        }
        if !member {
            return Err(Error::InvalidInput(
                "option follow=true: only a cluster volume moves between hosts, and this one is \
                 not (this host has no [cluster] section, or cluster=false was given)"
                    .into(),
            ));
        }
        if self.shared(pool) {
            return Err(Error::InvalidInput(format!(
                "option follow=true: pool {pool:?} is shared, so every host has the volume \
                 already; follow is for pools of one host"
            )));
        }
        self.move_target(opts).map(|_| ())
    }

    /// The backup target a `follow` volume moves through: its
    /// `backup-target`, else the default one.
    fn move_target(&self, opts: &BTreeMap<String, String>) -> Result<String> {
        let named = opts.get("backup-target").map(String::as_str);
        match self.target(named) {
            Ok(t) => Ok(t.config.name.clone()),
            Err(e) => Err(Error::InvalidInput(format!(
                "option follow=true: the volume moves between hosts through a backup target, \
                 and {e}"
            ))),
        }
    }

    /// Whether a Mount here must first bring `v` here: it follows its
    /// service and its bytes are on another host, or it arrived here and
    /// its archive is not yet known as a backup here.
    pub(in crate::core) fn must_fetch(&self, v: &Volume) -> bool {
        v.cluster.is_some() && follows_opts(&v.driver_opts) && (!self.bytes_here(v) || arriving(v))
    }

    /// Brings `v` here for a Mount, by `deadline`: asks its home for it
    /// and waits for the record to name this host, then finds its archive
    /// among the target's backups. The caller mounts it then, restoring
    /// the archive first as for any deallocated volume.
    pub(in crate::core) async fn fetch(&self, v: &Volume, deadline: Instant) -> Result<()> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(()) };
        if !self.bytes_here(v) {
            self.wait_for_others(v, deadline, HoldsWith::Mounts).await?;
            self.safe_lease().ok_or(ClusterError::NoLease)?;
            c.request_move(&v.name, &m.key).await?;
            tracing::info!(volume = %v.name, from = %m.home, "cluster: asked for the volume to move here");
            self.wait_for_arrival(v, deadline).await?;
            // The old home lets go once its record is written.
            self.wait_for_others(v, deadline, HoldsWith::Anything).await?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.adopt_archive(&v.name, &m.key)).await {
            Ok(adopted) => adopted,
            Err(_) => Err(Error::InvalidState(format!(
                "volume {:?} moved here; listing its backup target takes longer than Docker \
                 waits for a Mount: start the container again in a moment",
                v.name
            ))),
        }
    }

    /// Waits up to `mount_wait` for other hosts to let go: of their
    /// mounts before a request (a last Unmount may be under way: swarm
    /// starts the new task before the old one stopped), of anything
    /// after the move (the old home's holding for the job).
    async fn wait_for_others(&self, v: &Volume, deadline: Instant, what: HoldsWith) -> Result<()> {
        let Some(c) = self.cluster() else { return Ok(()) };
        let until = deadline.min(Instant::now() + c.mount_wait());
        loop {
            let notified = self.inner.cluster.holders_changed.notified();
            let Some(held) = self.held_elsewhere(v, what) else { return Ok(()) };
            if Instant::now() >= until {
                return Err(held.into());
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }

    /// Another host's holding of `v` with `what`, as the error that names it.
    fn held_elsewhere(&self, v: &Volume, what: HoldsWith) -> Option<ClusterError> {
        let c = self.cluster()?;
        let h = c.holders(&v.name).into_iter().find(|h| {
            h.node != c.node() && (h.mounts > 0 || matches!(what, HoldsWith::Anything))
        })?;
        Some(ClusterError::Held { name: v.name.clone(), node: h.node, mounts: h.mounts })
    }

    /// Waits for the record to name this host as the volume's home.
    async fn wait_for_arrival(&self, v: &Volume, deadline: Instant) -> Result<()> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(()) };
        loop {
            let notified = self.inner.cluster.moved.notified();
            let now = self.get(&v.name)?;
            if now.cluster.as_ref().map(|n| &n.key) != Some(&m.key) {
                return Err(ClusterError::Moved { name: v.name.clone() }.into());
            }
            if self.bytes_here(&now) {
                return Ok(());
            }
            // The home took new containers meanwhile: it keeps the volume.
            if let Some(held) = self.held_elsewhere(v, HoldsWith::Mounts) {
                let _ = c.cancel_move(&v.name).await;
                return Err(held.into());
            }
            if Instant::now() >= deadline {
                return Err(self.not_arrived(&now).await);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), notified).await;
        }
    }

    /// Why a move has not arrived in time. The request stays: the move
    /// goes on, and a later Mount finds the volume here.
    async fn not_arrived(&self, v: &Volume) -> Error {
        let home = v.cluster.as_ref().map(|m| m.home.clone()).unwrap_or_default();
        let alive = match self.cluster() {
            Some(c) => c.nodes().await.map(|nodes| nodes.iter().any(|n| n.node == home)),
            None => Ok(false),
        };
        match alive {
            Ok(false) => Error::InvalidState(format!(
                "volume {:?} is on host {home}, which is not in the cluster now (its lease \
                 expired); its data is there: start that host again, or restore the volume here \
                 from a backup (ballast backup restore BACKUP --into {})",
                v.name, v.name
            )),
            _ => Error::InvalidState(format!(
                "volume {:?} is moving here from host {home} (through a backup), which takes \
                 longer than Docker waits for a Mount; start the container again in a moment",
                v.name
            )),
        }
    }

    /// On the volume's new home, before its first Mount: the archive its
    /// record names, found among the target's backups, becomes the
    /// backup the volume is restored from.
    async fn adopt_archive(&self, name: &str, key: &str) -> Result<()> {
        let Some(archive) = self.archive(key) else {
            return Err(Error::InvalidState(format!(
                "volume {name:?} moved here and this host has not read the cluster's registry \
                 since it started, which names the backup to restore it from; try again once \
                 `ballast cluster status` answers"
            )));
        };
        let unreadable = |e: &dyn std::fmt::Display| {
            Error::InvalidState(format!(
                "volume {name:?} moved here; its data is in restic snapshot {} of backup target \
                 {:?}, which this host cannot read ({e}); every host of the cluster needs that \
                 target, configured alike",
                short(&archive.snapshot),
                archive.target
            ))
        };
        if !self.has_target(&archive.target) {
            return Err(unreadable(&"no such target here"));
        }
        let backup = match self.backup_by_snapshot(&archive) {
            Some(b) => b,
            None => {
                self.sync_backups(&archive.target).await.map_err(|e| unreadable(&e))?;
                self.backup_by_snapshot(&archive)
                    .ok_or_else(|| unreadable(&"the target does not list that snapshot"))?
            }
        };
        let (_guard, current) = self.lock_live(name).await?;
        if current.cluster.as_ref().map(|m| m.key.as_str()) != Some(key) || !arriving(&current) {
            return Ok(());
        }
        let mut v = (*current).clone();
        v.archived_in = Some(backup);
        v.transitioning = Transitioning::No;
        v.transitioning_message.clear();
        // Older backups of this row are not what it holds now.
        v.written_ms = crate::units::now_ms();
        let v = self.save(v).await?;
        self.publish(v);
        Ok(())
    }

    fn backup_by_snapshot(&self, archive: &Archive) -> Option<i64> {
        self.backups(None)
            .into_iter()
            .find(|b| {
                b.target == archive.target && b.restic_id.as_deref() == Some(&archive.snapshot)
            })
            .map(|b| b.id)
    }

    /// The archive the registry names for the volume with `key`.
    fn archive(&self, key: &str) -> Option<Archive> {
        self.inner.cluster.archives.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    pub(super) fn note_archive(&self, r: &Record) {
        let mut all = self.inner.cluster.archives.lock().unwrap_or_else(|p| p.into_inner());
        match &r.archive {
            Some(a) => all.insert(r.key.clone(), a.clone()),
            None => all.remove(&r.key),
        };
    }

    /// Refuses a Mount here of a volume this host is handing over.
    pub(in crate::core) fn check_not_leaving(&self, v: &Volume) -> Result<()> {
        let moving = self.inner.cluster.moving.lock().unwrap_or_else(|p| p.into_inner());
        match moving.get(&v.id) {
            Some(to) => Err(Error::InvalidState(format!(
                "volume {:?} is moving to host {to}, where it was mounted: mount it there",
                v.name
            ))),
            None => Ok(()),
        }
    }

    /// Host `to` asks for the volume `name`: if it lives here, follows
    /// its service and is not mounted, it is handed over (in the
    /// background; a second request while one runs is the same move).
    pub(super) fn move_asked(&self, name: String, to: String) {
        if self.node() == Some(to.as_str()) {
            return;
        }
        let Ok(v) = self.get(&name) else { return };
        let home_here = v.cluster.as_ref().is_some_and(|m| self.node() == Some(m.home.as_str()));
        if !home_here || !follows_opts(&v.driver_opts) || self.shared(&v.pool) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.hand_off(&name, &to).await {
                tracing::warn!(volume = %name, to = %to, error = %e, "cluster: cannot hand the volume over; the next request tries again");
            }
        });
    }

    async fn hand_off(&self, name: &str, to: &str) -> Result<()> {
        let (_moving, hold) = {
            let (_guard, v) = self.lock_live(name).await?;
            if v.mount_count() > 0 || v.transitioning == Transitioning::Yes {
                tracing::info!(
                    volume = name,
                    to,
                    "cluster: a move was asked for a volume in use here; it stays"
                );
                return Ok(());
            }
            {
                let mut moving =
                    self.inner.cluster.moving.lock().unwrap_or_else(|p| p.into_inner());
                if moving.contains_key(&v.id) {
                    // One move at a time; the asker asks again if this one
                    // is not for it.
                    return Ok(());
                }
                moving.insert(v.id, to.to_string());
            }
            let moving = Moving { ballast: self.clone(), id: v.id };
            // Held for the whole move, taken under the lock as every
            // holding is: nobody else holds it meanwhile.
            (moving, self.hold_for_job(&v).await?)
        };
        let result = self.hand_off_steps(name, to).await;
        drop(hold);
        result
    }

    /// Backup, deallocation, then the record: in this order, so that the
    /// record never names the new home while bytes are writable here.
    async fn hand_off_steps(&self, name: &str, to: &str) -> Result<()> {
        let Some(c) = self.cluster() else { return Ok(()) };
        let v = self.get(name)?;
        let Some(m) = v.cluster.clone() else { return Ok(()) };

        let target = self.move_target(&v.driver_opts)?;
        let started = Instant::now();
        let since = v.written_ms;
        if v.state != State::Requested {
            if self.backup_since_in(v.id, since, Some(&target)).is_none() {
                tracing::info!(volume = name, to, "cluster: moving; backing up");
                let b = self.create_backup(Some(&v.public_id()), None, Some(&target)).await?;
                let done = self.backup_done(b.id).await;
                match done {
                    Some(b) if b.restic_id.is_some() => {}
                    Some(b) => {
                        return Err(Error::InvalidState(format!(
                            "the backup for the move failed: {}",
                            b.message
                        )));
                    }
                    None => {
                        return Err(Error::InvalidState(
                            "the backup for the move was removed".into(),
                        ));
                    }
                }
            }
            self.deallocate(&v.public_id(), false).await?;
        }
        let v = self.get(name)?;
        let archive = match v.archived_in {
            // Deallocated here: the newest backup of its data in the target.
            Some(id) => {
                let archived = self.find_backup(&crate::public_id::Kind::Backup.id(id)).ok();
                let since = archived.map_or(since, |b| b.created_ms.min(since));
                self.backup_since_in(v.id, since, Some(&target))
                    .and_then(|b| b.restic_id.clone())
                    .map(|snapshot| Archive { target: target.clone(), snapshot })
            }
            // Moved here and not restored yet: passed on as it came.
            None if arriving(&v) => self.archive(&m.key),
            None => None,
        };
        let Some(archive) = archive else {
            return Err(Error::InvalidState(format!(
                "volume {name:?} is deallocated without a backup in target {target:?} to move it \
                 through; allocate it here, or restore it on host {to}"
            )));
        };
        let mut record = mirror::record_of(&v, &m);
        record.home = to.to_string();
        record.archive = Some(archive);
        match c.hand_over(record.clone()).await {
            Ok(()) => {
                tracing::info!(volume = name, to, took = ?started.elapsed(), "cluster: volume handed over");
                // This host's row follows before Mounts here are allowed
                // again, whatever the watch's delay.
                self.note_archive(&record);
                self.rehome(&record).await;
                Ok(())
            }
            Err(ClusterError::CalledOff { .. }) => {
                tracing::info!(
                    volume = name,
                    to,
                    "cluster: the move was called off; the volume stays here, archived (its next Mount here restores it)"
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The registry names another home for a volume this host mirrors
    /// (a move): this host's row follows. The old home's row becomes a
    /// mirror (its bytes went before the record changed); the new
    /// home's waits, deallocated, for its first Mount to restore it.
    pub(super) async fn rehome(&self, r: &Record) {
        let Some(me) = self.node().map(str::to_string) else { return };
        let Ok((_guard, current)) = self.lock_live(&r.name).await else { return };
        let Some(m) = &current.cluster else { return };
        if m.key != r.key || m.home == r.home {
            return;
        }
        let mut v = (*current).clone();
        let was_home = m.home == me;
        if was_home && v.state != State::Requested && !self.shared(&v.pool) {
            // Not a step of the protocol: a record written by hand, or
            // etcd restored from an old snapshot. The bytes here stay.
            tracing::warn!(volume = %r.name, home = %r.home, "cluster: the registry names another home for a volume whose bytes are here; they are kept");
            v.transitioning = Transitioning::Error;
            v.transitioning_message = format!(
                "the cluster's registry names host {} as this volume's home, but its bytes are \
                 here; take a backup, then remove it here",
                r.home
            );
            if let Ok(v) = self.save(v).await {
                self.publish(v);
            }
            return;
        }
        v.cluster = Some(crate::volume::Membership { key: r.key.clone(), home: r.home.clone() });
        v.used_bytes = 0;
        if r.home == me {
            mark_arriving(&mut v);
        } else if v.state != State::Requested {
            v.state = State::Inactive;
        }
        // A former home keeps `archived_in`: the backup it names stays
        // protected from removal here.
        match self.save(v).await {
            Ok(v) => {
                tracing::info!(volume = %v.name, home = %r.home, "cluster: the volume's home moved");
                self.publish(v);
                self.inner.cluster.moved.notify_waiters();
            }
            Err(e) => tracing::warn!(volume = %r.name, error = %e, "cluster: cannot follow a move"),
        }
    }
}

/// What another host's holding must have for a Mount here to wait.
#[derive(Clone, Copy)]
enum HoldsWith {
    Mounts,
    Anything,
}

/// A move this host runs; Mounts here are refused until it is dropped.
struct Moving {
    ballast: Ballast,
    id: i64,
}

impl Drop for Moving {
    fn drop(&mut self) {
        let mut moving =
            self.ballast.inner.cluster.moving.lock().unwrap_or_else(|p| p.into_inner());
        moving.remove(&self.id);
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
