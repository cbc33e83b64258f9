//! Remove (a soft delete into the trash) and purge (the data is destroyed,
//! the record stays as a tombstone so its id is never reused).
//!
//! Removal frees the name at once; the data stays for `trash_retention`,
//! after which the janitor purges it. A crash during a purge leaves the
//! volume `removed`, and the next janitor pass finishes the job.

use std::time::Duration;

use super::Ballast;
use crate::volume::{State, Transitioning, Volume, now_ms, validate_name};
use crate::{Error, Result};

impl Ballast {
    /// Removes a volume. Idempotent: a volume that is not there is fine.
    pub async fn remove(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let _guard = self.lock(name).await;
        let Ok(current) = self.get(name) else {
            return Ok(());
        };
        if current.mount_count() > 0 {
            return Err(Self::in_use(name, &current));
        }
        let mut v = (*current).clone();
        v.state = State::Removed;
        v.removed_ms = Some(now_ms());
        let v = self
            .blocking(move |this| {
                this.inner.store.save(&v)?;
                Ok(v)
            })
            .await?;
        tracing::info!(volume = %v.name, id = %v.public_id(), "volume removed (kept in the trash)");
        self.publish(v.clone());
        if self.inner.trash_retention.is_zero() {
            // The removal stands either way; a failed purge is recorded on
            // the record and retried by the janitor.
            let _ = self.purge(v).await;
        }
        Ok(())
    }

    /// Destroys a removed volume's data and keeps its record as a tombstone.
    async fn purge(&self, mut v: Volume) -> Result<()> {
        let (id, name) = (v.public_id(), v.name.clone());
        let res = self
            .blocking(move |this| {
                let destroyed = this.pool(&v.pool).and_then(|pool| {
                    pool.backend.destroy(&v.storage_key()).map_err(|e| {
                        Error::internal(format!("purging volume {}", v.public_id()), e)
                    })
                });
                match destroyed {
                    Ok(()) => {
                        v.state = State::Purged;
                        v.transitioning = Transitioning::No;
                        v.transitioning_message.clear();
                        this.inner.store.save(&v)
                    }
                    Err(e) => {
                        // Say why on the record; the janitor tries again later.
                        v.transitioning = Transitioning::Error;
                        v.transitioning_message = e.to_string();
                        this.inner.store.save(&v)?;
                        Err(e)
                    }
                }
            })
            .await;
        match &res {
            Ok(()) => tracing::info!(volume = %name, %id, "volume purged"),
            Err(e) => tracing::error!(volume = %name, %id, error = %e, "purge failed"),
        }
        res
    }

    /// Purges every removed volume older than the retention. Returns how
    /// many were purged.
    pub async fn purge_expired(&self) -> Result<usize> {
        let retention = i64::try_from(self.inner.trash_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(retention);
        let expired = self
            .blocking(move |this| this.inner.store.removed_before(cutoff))
            .await?;
        let mut purged = 0;
        for v in expired {
            if self.purge(v).await.is_ok() {
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// How often the janitor should look for expired volumes.
    pub fn janitor_period(&self) -> Duration {
        let retention = self.inner.trash_retention;
        if retention.is_zero() {
            // Removals purge inline; the janitor only retries failures.
            return Duration::from_secs(60);
        }
        (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}
