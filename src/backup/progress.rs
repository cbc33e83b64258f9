//! rustic's progress reports, relayed to an [`OnProgress`] callback.
//!
//! rustic wants `'static` progress objects and calls them from its worker
//! threads; the callback borrows from the caller. So the objects only
//! update a shared [`Progress`], and a scoped relay thread hands each new
//! value to the callback (at most ten times a second, and once more at the
//! end) while the operation runs, never after it returns.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustic_core::{ProgressBars, ProgressType, RusticProgress};

use super::{OnProgress, Progress};

#[derive(Debug, Default)]
struct State {
    now: Progress,
    dirty: bool,
    done: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut s = self.lock();
        f(&mut s.now);
        s.dirty = true;
        drop(s);
        self.changed.notify_all();
    }
}

/// The progress bars given to a rustic repository for one operation.
#[derive(Debug, Clone, Default)]
pub(super) struct Bars(Arc<Shared>);

impl Bars {
    /// One more file or directory handled.
    pub fn file_done(&self) {
        self.0.update(|p| p.files_done += 1);
    }

    pub fn set_files_done(&self, n: u64) {
        self.0.update(|p| p.files_done = n);
    }
}

impl ProgressBars for Bars {
    fn progress(&self, kind: ProgressType, _prefix: &str) -> rustic_core::Progress {
        // Only byte counts (the backup's reading, the restore's writing)
        // mean something to the caller; the rest (listing, indexing) stays
        // hidden, so rustic skips the work of counting them.
        match kind {
            ProgressType::Bytes => rustic_core::Progress::new(ByteCount(self.0.clone())),
            ProgressType::Counter | ProgressType::Spinner => rustic_core::Progress::hidden(),
        }
    }
}

#[derive(Debug)]
struct ByteCount(Arc<Shared>);

impl RusticProgress for ByteCount {
    // Must be false: rustic does not even compute a total for a hidden bar.
    fn is_hidden(&self) -> bool {
        false
    }

    fn set_length(&self, len: u64) {
        self.0.update(|p| p.bytes_total = len);
    }

    fn set_title(&self, _title: &str) {}

    fn inc(&self, inc: u64) {
        self.0.update(|p| p.bytes_done += inc);
    }

    fn finish(&self) {}
}

/// Runs `work` with fresh [`Bars`], relaying their reports to `on` from a
/// helper thread until `work` returns (or unwinds).
pub(super) fn relayed<T>(on: OnProgress<'_>, work: impl FnOnce(&Bars) -> T) -> T {
    let bars = Bars::default();
    std::thread::scope(|s| {
        let shared = &bars.0;
        s.spawn(move || relay(shared, on));
        let _end = EndOnDrop(shared);
        work(&bars)
    })
}

/// Tells the relay the operation is over, even when it unwinds (else the
/// scope would wait for the relay forever).
struct EndOnDrop<'a>(&'a Shared);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.lock().done = true;
        self.0.changed.notify_all();
    }
}

fn relay(shared: &Shared, on: OnProgress<'_>) {
    let mut s = shared.lock();
    loop {
        s = shared
            .changed
            .wait_while(s, |s| !s.dirty && !s.done)
            .unwrap_or_else(PoisonError::into_inner);
        let done = s.done;
        if s.dirty {
            s.dirty = false;
            let now = s.now;
            drop(s);
            on(now);
            s = shared.lock();
        }
        if done {
            return;
        }
        // At most ten reports a second, but the end is never held up.
        s = shared
            .changed
            .wait_timeout_while(s, Duration::from_millis(100), |s| !s.done)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
