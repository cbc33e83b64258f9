//! Scheduled snapshots and backups. The janitor calls [`Ballast::run_schedules`]
//! on every pass; what is due starts as its own task, so a long backup
//! never holds up the janitor. A run is recorded before it starts, so one
//! that fails is tried again at the next interval, not on every pass, and
//! a restart of the daemon neither repeats nor forgets it.

use std::sync::Arc;

use super::Ballast;
use super::locks::{Key, Lease};
use crate::backup::{BackupState, Keep};
use crate::schedule::Schedule;
use crate::snapshot::SnapState;
use crate::units::now_ms;
use crate::volume::{State, Transitioning, Volume};
use crate::{Error, Result};

/// Scheduled snapshots are named `auto-<ms since the epoch>`.
const AUTO: &str = "auto-";

impl Ballast {
    /// Starts the scheduled snapshots and backups that are due.
    pub async fn run_schedules(&self) {
        let now = now_ms();
        let due = |every: Option<u64>, last: i64| {
            every.is_some_and(|e| {
                now.saturating_sub(last)
                    >= i64::try_from(e).unwrap_or(i64::MAX).saturating_mul(1000)
            })
        };
        for v in self.list() {
            let s = &v.schedule;
            let settled = v.transitioning != Transitioning::Yes && v.fill_from.is_none();
            if s.is_empty() || !settled || !matches!(v.state, State::Inactive | State::Active) {
                continue;
            }
            // A run still going (a backup slower than its interval) is not
            // joined by another.
            let backing_up =
                self.backups(Some(v.id)).iter().any(|b| b.state == BackupState::Creating);
            let snapshot =
                due(s.snapshot_every, s.last_snapshot_ms) && self.snapshot_running(v.id).is_none();
            let backup = due(s.backup_every, s.last_backup_ms) && !backing_up;
            if !(snapshot || backup) {
                continue;
            }
            if let Err(e) = self.record_run(v.id, snapshot, backup, now).await {
                tracing::warn!(volume = %v.name, error = %e, "cannot record a scheduled run");
                continue;
            }
            let this = self.clone();
            let v = v.clone();
            tokio::spawn(async move {
                if snapshot {
                    this.scheduled_snapshot(&v, now).await;
                }
                if backup {
                    this.scheduled_backup(&v).await;
                }
            });
        }
    }

    /// Replaces a volume's schedule (the admin API's update).
    pub async fn set_schedule(&self, reference: &str, schedule: Schedule) -> Result<Arc<Volume>> {
        if schedule.backup_every.is_some() {
            self.target(schedule.backup_target.as_deref())
                .map_err(|e| Error::InvalidInput(format!("schedule backupTarget: {e}")))?;
        }
        let (_guard, current) = self.lock_ref(reference).await?;
        let mut v = (*current).clone();
        // Keep when it last ran: a new interval counts from there.
        v.schedule = Schedule {
            last_snapshot_ms: v.schedule.last_snapshot_ms,
            last_backup_ms: v.schedule.last_backup_ms,
            ..schedule
        };
        let v = self.save(v).await?;
        Ok(self.publish(v))
    }

    async fn record_run(&self, id: i64, snapshot: bool, backup: bool, now: i64) -> Result<()> {
        let _guard = self.inner.locks.lock(Key::Volume(id)).await;
        let mut v = (*self.volume_by_id(id)?).clone();
        if snapshot {
            v.schedule.last_snapshot_ms = now;
        }
        if backup {
            v.schedule.last_backup_ms = now;
        }
        let v = self.save(v).await?;
        self.publish(v);
        Ok(())
    }

    /// Takes a scheduled snapshot, then removes the oldest scheduled ones
    /// beyond the count to keep.
    async fn scheduled_snapshot(&self, v: &Volume, now: i64) {
        let taken = match self.snapshot(&v.public_id(), Some(format!("{AUTO}{now}"))).await {
            Ok(s) => self.snapshot_done(s.id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = taken {
            tracing::warn!(volume = %v.name, error = %e, "scheduled snapshot failed");
            return;
        }
        let Some(keep) = v.schedule.snapshot_keep else { return };
        let mut auto: Vec<_> = self
            .snapshots(Some(v.id))
            .into_iter()
            .filter(|s| s.state == SnapState::Created && s.name.starts_with(AUTO))
            .filter(|s| !self.inner.locks.leased(Lease::Snapshot(s.id)))
            .collect();
        auto.sort_by_key(|s| (s.created_ms, s.id));
        let extra = auto.len().saturating_sub(keep as usize);
        for s in &auto[..extra] {
            match self.remove_snapshot(&s.public_id()).await {
                Ok(_) => {
                    tracing::info!(volume = %v.name, snapshot = %s.public_id(), "scheduled snapshot trimmed")
                }
                Err(e) => {
                    tracing::warn!(volume = %v.name, error = %e, "cannot trim a scheduled snapshot")
                }
            }
        }
    }

    /// Takes a scheduled backup, then forgets the volume's backups in
    /// that target beyond the count to keep.
    async fn scheduled_backup(&self, v: &Volume) {
        let s = &v.schedule;
        let target = s.backup_target.as_deref();
        let b = match self.create_backup(Some(&v.public_id()), None, target).await {
            Ok(b) => self.backup_done(b.id).await,
            Err(e) => {
                tracing::warn!(volume = %v.name, error = %e, "scheduled backup failed");
                return;
            }
        };
        let Some(b) = b.filter(|b| b.state == BackupState::Created) else { return };
        if let Some(last) = s.backup_keep {
            let keep = Keep { last: Some(last), ..Keep::default() };
            self.apply_retention(&b.target, &b.meta.volume_id, keep).await;
        }
    }
}
