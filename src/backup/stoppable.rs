//! A backend that refuses to read once its stop flag is set: how a
//! restore's writing phase is cancelled. rustic's restore has no cancel
//! hook; it reads each pack from the backend in a worker job, so once the
//! flag is set every job that has not read yet fails at once (rustic
//! unwraps the error, the job's panic ends it, and `restore.rs` reports a
//! cancellation) instead of reading and writing the rest of the data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// The message of a read refused after the stop: recognised in a
/// worker's panic, which then is not reported as a panic.
pub(super) const STOPPED: &str = "ballast: the operation was cancelled";

#[derive(Debug)]
pub(super) struct Stoppable {
    inner: Arc<dyn WriteBackend>,
    stop: Arc<AtomicBool>,
}

impl Stoppable {
    pub fn new(inner: Arc<dyn WriteBackend>, stop: Arc<AtomicBool>) -> Stoppable {
        Stoppable { inner, stop }
    }

    fn check(&self) -> RusticResult<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(RusticError::new(ErrorKind::Backend, STOPPED));
        }
        Ok(())
    }
}

impl ReadBackend for Stoppable {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.check()?;
        self.inner.list_with_size(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.check()?;
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.check()?;
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for Stoppable {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        self.check()?;
        self.inner.write_bytes(tpe, id, cacheable, content)
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}

/// Keeps the worker panics of a stopped operation out of the log: each
/// job that finds the backend stopped panics once, by rustic's design.
/// Every other panic goes to the hook installed before.
pub(super) fn quiet_stopped_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            // rustic's workers are unnamed; every thread of ours has a name.
            let worker = std::thread::current().name().is_none();
            if !(worker && text.contains(STOPPED)) {
                before(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_stopped_the_backend_neither_reads_nor_writes_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let local = rustic_backend::LocalBackend::new(dir.path().to_str().unwrap(), Vec::new());
        let stop = Arc::new(AtomicBool::new(false));
        let be = Stoppable::new(Arc::new(local.unwrap()), stop.clone());
        be.create().unwrap();
        let id = Id::default();
        be.write_bytes(FileType::Pack, &id, false, Bytes::from_static(b"pack").into()).unwrap();
        assert_eq!(&be.read_partial(FileType::Pack, &id, false, 1, 2).unwrap()[..], b"ac");

        stop.store(true, Ordering::Relaxed);
        let refused = be.read_partial(FileType::Pack, &id, false, 0, 4).unwrap_err();
        assert!(format!("{refused:?}").contains(STOPPED), "{refused:?}");
        assert!(be.read_full(FileType::Pack, &id).is_err());
        assert!(be.list_with_size(FileType::Pack).is_err());
        let late = Bytes::from_static(b"late").into();
        assert!(be.write_bytes(FileType::Pack, &Id::random(), false, late).is_err());
    }
}
