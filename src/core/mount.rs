//! Mount and Unmount: Docker's reference counting, kept per mount ID.
//!
//! Docker can send the same ID in several Mounts, so each ID has a count
//! (a multiset). Storage is activated on the first mount and deactivated
//! after the last unmount; the counts are persisted with the state in one
//! transaction, so a restarted daemon knows exactly who still holds what.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a Mount waits for a job on its volume: under Docker's 30 s.
const MOUNT_WAIT: Duration = Duration::from_secs(25);

use super::{Action, Ballast, mount_list};
use crate::public_id::Kind;
use crate::volume::{State, Transitioning, Volume, validate_name};
use crate::{Error, Result};

impl Ballast {
    /// Records one more mount under `id` and returns the mountpoint.
    pub async fn mount(&self, name: &str, id: &str) -> Result<PathBuf> {
        let deadline = Instant::now() + MOUNT_WAIT;
        let (guard, current) = loop {
            self.wait_until_settled(name, deadline).await?;
            let (guard, current) = self.lock_live(name).await?;
            if current.transitioning == Transitioning::Yes {
                // A job started between the wait and the lock: wait for it too.
                continue;
            }
            self.check_not_leaving(&current)?;
            if self.must_fetch(&current) {
                // A volume that follows its service comes here first.
                drop(guard);
                self.fetch(&current, deadline).await?;
                continue;
            }
            if current.state != State::Requested {
                break (guard, current);
            }
            // Cold archive: a deallocated volume comes back from its newest
            // backup first, as a job that this Mount waits for while Docker
            // allows (a later Mount finds it done). Never an empty volume in
            // place of archived data.
            let Some(archived) = current.archived_in else { break (guard, current) };
            let newest = self.backup_since(current.id, current.written_ms);
            let Some(b) = newest.or_else(|| self.find_backup(&Kind::Backup.id(archived)).ok())
            else {
                return Err(Error::InvalidState(format!(
                    "volume {name:?} was archived in backup {}, which is gone; restore \
                     it from another backup (ballast backup restore BACKUP --into {name}) or \
                     start it empty (ballast volume allocate {name})",
                    Kind::Backup.id(archived)
                )));
            };
            if current.transitioning == Transitioning::Error {
                return Err(Error::InvalidState(format!(
                    "volume {name:?} could not be restored from its backup ({}); retry with \
                     `ballast backup restore {} --into {name}`",
                    current.transitioning_message,
                    b.public_id()
                )));
            }
            drop(guard);
            self.restore_from_backup(&current.public_id(), &b.public_id()).await?;
        };
        if current.fill_from.is_some() {
            return Err(Error::InvalidState(format!(
                "volume {name:?} was never filled completely ({}); remove it and create it again",
                current.transitioning_message
            )));
        }
        let current = if current.state == State::Requested {
            // Nothing to restore it from (no backup): start empty.
            self.transition_locked(&current, Action::Allocate, super::actions::allocate).await?
        } else {
            current
        };
        let mut v = (*current).clone();
        if !matches!(v.state, State::Inactive | State::Active) {
            return Err(Error::InvalidState(format!(
                "volume {name:?} is {} and cannot be mounted",
                v.state.as_str()
            )));
        }
        let first = v.mount_count() == 0;
        self.check_access(&v.driver_opts)?;
        // A cluster volume is held in etcd before any byte is handed out.
        self.hold_for_mount(&v, v.mount_count() + 1).await?;
        *v.mounts.entry(id.to_string()).or_insert(0) += 1;
        v.state = State::Active;
        let mounted = self
            .blocking(move |this| {
                let storage = this.storage(&v)?;
                let key = v.storage_key();
                let path = if first {
                    storage.activate(&key).map_err(|e| {
                        Error::internal(
                            format!("activating volume {:?} in pool {:?}", v.name, v.pool),
                            e,
                        )
                    })?
                } else {
                    storage.mountpoint(&key)
                };
                // Checked again at every Mount, not only the first: what
                // Docker is handed must be there and be this volume.
                let exposed = this.expose(&storage, &v);
                // Mount counts need to survive the daemon, not the host.
                let saved = exposed.and_then(|()| this.inner.store.save_relaxed(&v));
                if let Err(e) = saved {
                    if first {
                        let _ = this.withdraw(&v);
                        let _ = storage.deactivate(&key);
                    }
                    return Err(e);
                }
                let path = this.docker_mountpoint(&v).unwrap_or(path);
                Ok((v, path))
            })
            .await;
        let (v, path) = match mounted {
            Ok(done) => done,
            Err(e) => {
                self.release_if_idle(&current).await;
                return Err(e);
            }
        };
        tracing::info!(volume = %v.name, mount_id = id, mounts = v.mount_count(), "mounted");
        self.publish(v.clone());
        if let Err(e) = self.confirm_holding(&v) {
            // The lease may have gone during the storage work: undone.
            drop(guard);
            let _ = self.unmount(name, id).await;
            return Err(e);
        }
        Ok(path)
    }

    /// Waits while a job (a fill, a revert) changes the volume, as long as
    /// Docker allows a Mount (30 s) with some margin; then says why and
    /// how to follow it, rather than let Docker time out in silence.
    async fn wait_until_settled(&self, name: &str, deadline: Instant) -> Result<()> {
        let settled = self.wait_for(Some(deadline), |this| match this.get(name) {
            Ok(v) if v.transitioning == Transitioning::Yes => None,
            Ok(_) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        });
        if let Some(done) = settled.await {
            return done;
        }
        let current = self.get(name)?;
        Err(Error::InvalidState(format!(
            "volume {name:?} is busy ({}); follow it with `ballast volume inspect {name}` and \
             start the container again once transitioning is \"no\"",
            current.transitioning_message
        )))
    }

    /// Drops one mount under `id`. Unknown IDs and volumes are not errors
    /// (Docker retries Unmount after failures and restarts), and are
    /// answered from memory without taking any lock.
    pub async fn unmount(&self, name: &str, id: &str) -> Result<()> {
        validate_name(name)?;
        let known = self.get(name).is_ok_and(|v| v.mounts.contains_key(id));
        let locked = if known { self.lock_live(name).await.ok() } else { None };
        let Some((_guard, current)) = locked.filter(|(_, v)| v.mounts.contains_key(id)) else {
            tracing::warn!(
                volume = name,
                mount_id = id,
                "unmount of an unknown volume or mount ID ignored"
            );
            return Ok(());
        };
        let mut v = (*current).clone();
        match v.mounts.get_mut(id) {
            Some(1) | None => {
                v.mounts.remove(id);
            }
            Some(n) => *n -= 1,
        }
        let last = v.mount_count() == 0;
        if last {
            v.state = State::Inactive;
            v.written_ms = crate::units::now_ms();
        }
        let v = self
            .blocking(move |this| {
                let storage = this.storage(&v)?;
                let key = v.storage_key();
                if last {
                    // Before the storage goes: a loop volume's filesystem
                    // lives on while a bind of it is mounted.
                    this.withdraw(&v)?;
                    storage.deactivate(&key).map_err(|e| {
                        Error::internal(
                            format!("deactivating volume {:?} in pool {:?}", v.name, v.pool),
                            e,
                        )
                    })?;
                }
                this.inner.store.save_relaxed(&v)?;
                Ok(v)
            })
            .await?;
        tracing::info!(volume = %v.name, mount_id = id, mounts = v.mount_count(), "unmounted");
        let v = self.publish(v);
        if last {
            // No mount of it is left here to fence: its next Mount is a
            // fresh holding.
            self.forget_holding(v.id);
            // In the background: Docker's Unmount does not wait for etcd,
            // and another host that finds the volume still held waits
            // for the release (`while_held`).
            self.release_soon(v.id, false);
            self.measure_soon(v.clone());
        } else {
            self.hold_fewer(&v).await;
        }
        Ok(())
    }

    /// Measures volume `quiet` (as its last Unmount published it) in the
    /// background: a walk of a dir pool's volume takes as long as its
    /// files are many, and Docker's Unmount (a container's stop) must not
    /// wait for it. The walk runs outside the volume's lock; its answer
    /// is kept only if nothing was published for the volume meanwhile (no
    /// Mount, no job), and only the measured field is written.
    fn measure_soon(&self, quiet: Arc<Volume>) {
        let this = self.clone();
        tokio::spawn(async move {
            let id = quiet.id;
            let walked = quiet.clone();
            let measured = this
                .blocking(move |this| Ok(this.storage(&walked)?.usage(&walked.storage_key())?))
                .await;
            let Ok(used) = measured else { return };
            let _guard = this.inner.locks.lock(super::locks::Key::Volume(id)).await;
            let unchanged = this.volume_by_id(id).is_ok_and(|now| Arc::ptr_eq(&now, &quiet));
            if !unchanged || quiet.used_bytes == used {
                return;
            }
            let saved = this.blocking(move |this| this.inner.store.set_used_bytes(id, used)).await;
            if saved.is_ok() {
                let mut v = (*quiet).clone();
                v.used_bytes = used;
                this.publish(v);
            }
        });
    }

    /// The message for a volume that still has mounts. The mounts are
    /// Docker's own ids, which no docker command shows: it says how to
    /// find the containers too (adapters that can ask Docker replace it
    /// with their names).
    pub(super) fn in_use(name: &str, v: &Volume) -> Error {
        Error::InUse {
            volume: v.name.clone(),
            mounts: v.mount_count() as usize,
            message: format!(
                "volume {name:?} is in use by {} mount(s) (Docker's mount ids: {}); \
                 `docker ps -a --filter volume={}` names the containers",
                v.mount_count(),
                mount_list(&v.mounts),
                v.name
            ),
        }
    }
}
