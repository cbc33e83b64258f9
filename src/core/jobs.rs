//! Waiting for jobs to end: a fill, a snapshot, a revert, a backup, a
//! restore. A job's every change of state is published (`publish`,
//! `publish_snapshot`, `publish_backup`), and each publication wakes
//! whoever waits on a job, who looks again: waiters wake when something
//! changed instead of polling on a timer.

use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Ballast;

/// How long a waiter sleeps at most between looks: a record changed
/// without a publication (a progress message) is seen this late.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Woken at every publication of a volume, snapshot or backup.
#[derive(Default)]
pub(super) struct Published(Notify);

impl Published {
    pub(super) fn wake(&self) {
        self.0.notify_waiters();
    }
}

impl Ballast {
    /// Waits until `done` has an answer, looking again at every
    /// publication; `None` once `deadline` (if any) has passed.
    pub(super) async fn wait_for<T>(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&Ballast) -> Option<T>,
    ) -> Option<T> {
        loop {
            let woken = self.inner.published.0.notified();
            tokio::pin!(woken);
            // Registered before looking: a publication in between wakes it.
            woken.as_mut().enable();
            if let Some(answer) = done(self) {
                return Some(answer);
            }
            let nap = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(LOOK_AGAIN),
                    _ => return None,
                },
                None => LOOK_AGAIN,
            };
            let _ = tokio::time::timeout(nap, woken).await;
        }
    }
}
