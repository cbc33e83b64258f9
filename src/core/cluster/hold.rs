//! Holding a cluster volume in etcd while this host uses its bytes: for
//! its mounts, and for the jobs on it (snapshot, revert, backup, restore,
//! deallocation). What holds it here is counted here — Docker's mounts in
//! the record, jobs in `State::jobs` — and changed only under the
//! volume's lock, so that the holding is let go exactly when the last of
//! them ends, never while one still runs.

use std::time::{Duration, Instant};

use super::{Ballast, access_of};
use crate::cluster::{Error as ClusterError, Health, Ticket};
use crate::core::locks::Key;
use crate::volume::Volume;
use crate::{Error, Result};

/// How long a job or a removal waits for another host's holding to go
/// before it is refused: a holder lets go in the background after its
/// last Unmount, one etcd round trip later.
pub(in crate::core) const RELEASE_WAIT: Duration = Duration::from_secs(5);

impl Ballast {
    /// Before a Mount of a cluster volume (under its lock): this host
    /// holds it in etcd with `mounts` mounts, waiting up to `mount_wait`
    /// for another holder to let go. Every try shares that one deadline,
    /// so a Mount ends within what Docker allows.
    pub(in crate::core) async fn hold_for_mount(&self, v: &Volume, mounts: u32) -> Result<()> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(()) };
        if self.is_fenced(v.id) {
            return Err(Error::InvalidState(format!(
                "volume {:?} is fenced (read-only) since this host lost its lease while it was \
                 mounted; stop its containers here, then start them again",
                v.name
            )));
        }
        if !self.bytes_here(v) {
            return Err(Error::InvalidState(format!(
                "volume {:?} lives in pool {:?} on host {}, which is not shared: mount it there",
                v.name, v.pool, m.home
            )));
        }
        self.safe_lease().ok_or(ClusterError::NoLease)?;
        let exclusive = access_of(v).exclusive();
        let within = c.mount_wait();
        let deadline = Instant::now() + within;
        let hold = || async move {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = c.hold(&v.name, &m.key, mounts, exclusive);
            match tokio::time::timeout(left.max(Duration::from_secs(1)), attempt).await {
                Ok(held) => held,
                Err(_) => Err(ClusterError::Unreachable("holding the volume timed out".into())),
            }
        };
        let ticket = self.while_held(within, hold).await?;
        self.note_ticket(v.id, ticket);
        Ok(())
    }

    /// After a Mount's storage work: the lease that holds the volume must
    /// still be the one the holding was made under, and still safe; else
    /// the lease may be gone (and the fencing that followed missed this
    /// Mount, which had no count yet), and the Mount must not stand.
    pub(in crate::core) fn confirm_holding(&self, v: &Volume) -> Result<()> {
        if self.cluster().is_none() || v.cluster.is_none() {
            return Ok(());
        }
        let ticket = self
            .inner
            .cluster
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&v.id)
            .copied();
        match (self.safe_lease(), ticket) {
            (Some(lease), Some(t)) if t.lease == lease && !self.is_fenced(v.id) => Ok(()),
            _ => Err(Error::InvalidState(format!(
                "this host lost its lease in etcd while mounting volume {:?}; try again once \
                 `ballast cluster status` lists it",
                v.name
            ))),
        }
    }

    /// For a job about to swap new content into volume `id` (a revert, a
    /// restore): a cluster volume must still be held here under a safe
    /// lease. A job runs longer than a lease may live, and once the
    /// lease is lost another host may hold the volume.
    pub(in crate::core) fn still_holds(&self, id: i64) -> std::io::Result<()> {
        let Ok(v) = self.volume_by_id(id) else { return Ok(()) };
        if self.cluster().is_none() || v.cluster.is_none() {
            return Ok(());
        }
        match (self.safe_lease(), self.ticket(id)) {
            (Some(lease), Some(t)) if t.lease == lease && !self.is_fenced(id) => Ok(()),
            _ => Err(std::io::Error::other(format!(
                "this host lost its lease in etcd while the job ran on volume {:?}, so nothing \
                 was swapped in: the volume is as it was",
                v.name
            ))),
        }
    }

    /// The lease this host holds now, while it is safe to write under.
    pub(super) fn safe_lease(&self) -> Option<i64> {
        match *self.cluster()?.health().borrow() {
            Health::Up { safe_until, lease } if Instant::now() < safe_until => Some(lease),
            _ => None,
        }
    }

    pub(super) fn note_ticket(&self, id: i64, ticket: Ticket) {
        self.inner.cluster.tickets.lock().unwrap_or_else(|p| p.into_inner()).insert(id, ticket);
    }

    /// The revision of this host's last holding of `id`: holder events
    /// older than it are stale.
    pub(super) fn ticket(&self, id: i64) -> Option<Ticket> {
        self.inner.cluster.tickets.lock().unwrap_or_else(|p| p.into_inner()).get(&id).copied()
    }

    /// Before a job on a cluster volume's bytes (under its lock): this
    /// host holds the volume for the job, so that no other host writes
    /// it meanwhile. `None` for a volume of this host alone.
    pub(in crate::core) async fn hold_for_job(&self, v: &Volume) -> Result<Option<JobHold>> {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return Ok(None) };
        if !self.bytes_here(v) {
            return Err(Error::InvalidState(format!(
                "volume {:?} lives in pool {:?} on host {}, which is not shared: run this there",
                v.name, v.pool, m.home
            )));
        }
        let running = self.jobs_on(v.id);
        if running == 0 && v.mount_count() == 0 {
            self.safe_lease().ok_or(ClusterError::NoLease)?;
            let hold = || c.hold(&v.name, &m.key, 0, true);
            let ticket = self.while_held(RELEASE_WAIT, hold).await?;
            self.note_ticket(v.id, ticket);
        }
        *self
            .inner
            .cluster
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(v.id)
            .or_insert(0) += 1;
        Ok(Some(JobHold { ballast: self.clone(), id: v.id }))
    }

    fn jobs_on(&self, id: i64) -> u32 {
        self.inner
            .cluster
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    /// After an Unmount that was not the last: the count others see.
    pub(in crate::core) async fn hold_fewer(&self, v: &Volume) {
        let (Some(c), Some(m)) = (self.cluster(), &v.cluster) else { return };
        if self.is_fenced(v.id) {
            return;
        }
        if let Ok(t) = c.hold(&v.name, &m.key, v.mount_count(), access_of(v).exclusive()).await {
            self.note_ticket(v.id, t);
        }
    }

    /// At a clean stop, after the last request was answered: waits (up to
    /// `within`) for the releases still under way (a job that just
    /// ended), so that its volume is free for the other hosts at once
    /// rather than when this host's lease expires.
    pub async fn settle_releases(&self, within: std::time::Duration) {
        let deadline = Instant::now() + within;
        let state = &self.inner.cluster;
        loop {
            let released = state.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if state.releasing.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    "cluster: releases in etcd still under way at the stop; the lease's expiry ends them"
                );
                return;
            }
            let _ = tokio::time::timeout(left, released).await;
        }
    }

    /// Forgets what this host knew of its holding of volume `id` (its
    /// fence, its ticket) once nothing here uses it; the holding in etcd
    /// goes with [`Ballast::release_if_idle`].
    pub(in crate::core) fn forget_holding(&self, id: i64) {
        self.inner.cluster.fenced.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.inner.cluster.tickets.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Lets go in etcd once nothing here uses `v` (its mounts, its jobs):
    /// for the caller holding its lock. A failure only delays the others
    /// until the lease runs out.
    pub(in crate::core) async fn release_if_idle(&self, v: &Volume) {
        let (Some(c), Some(_)) = (self.cluster(), &v.cluster) else { return };
        if v.mount_count() > 0 || self.jobs_on(v.id) > 0 {
            return;
        }
        self.forget_holding(v.id);
        if let Err(e) = c.release(&v.name).await {
            tracing::warn!(volume = %v.name, error = %e, "cluster: cannot release; the lease's expiry will");
        }
    }

    /// Lets go of volume `id` in etcd in the background, once its lock is
    /// free and if nothing here uses it by then (a Mount that came first
    /// keeps the holding): for the last Unmount (`job` false) and for a
    /// job that ended (`job` true, one fewer counted). Docker's Unmount
    /// and a job's caller do not wait for etcd; another host that finds
    /// the volume still held waits for it ([`Ballast::while_held`]).
    pub(in crate::core) fn release_soon(&self, id: i64, job: bool) {
        // Nothing is held, or counted, on a host outside a cluster: its
        // Unmounts spawn nothing.
        if self.cluster().is_none() {
            return;
        }
        let this = self.clone();
        let releasing = Releasing::new(&this);
        tokio::spawn(async move {
            let _releasing = releasing;
            let _guard = this.inner.locks.lock(Key::Volume(id)).await;
            if job {
                let mut jobs = this.inner.cluster.jobs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = jobs.get_mut(&id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        jobs.remove(&id);
                    }
                }
            }
            if let Ok(v) = this.volume_by_id(id) {
                this.release_if_idle(&v).await;
            }
        });
    }

    /// Runs `attempt` again while another host holds the volume, up to
    /// `within`: a holder whose last Unmount or job just ended lets go in
    /// the background, one etcd round trip later. Woken by the watch when
    /// the holders change. Past `within`, the refusal names the holder.
    pub(in crate::core) async fn while_held<T, F, Fut>(
        &self,
        within: Duration,
        mut attempt: F,
    ) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterError>>,
    {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.inner.cluster.holders_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match attempt().await {
                Err(ClusterError::Held { .. }) if Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ =
                        tokio::time::timeout(left.min(Duration::from_millis(500)), notified).await;
                }
                done => return done,
            }
        }
    }
}

/// A job's holding of a volume; let go when dropped, if nothing else
/// here uses the volume by then.
pub(in crate::core) struct JobHold {
    ballast: Ballast,
    id: i64,
}

/// A release in etcd under way, counted while it lives.
struct Releasing(Ballast);

impl Releasing {
    fn new(b: &Ballast) -> Self {
        b.inner.cluster.releasing.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Releasing(b.clone())
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        let state = &self.0.inner.cluster;
        state.releasing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        state.released.notify_waiters();
    }
}

impl Drop for JobHold {
    fn drop(&mut self) {
        self.ballast.release_soon(self.id, true);
    }
}
