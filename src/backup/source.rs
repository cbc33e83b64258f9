//! The backup's source: rustic's local walk, counted for progress and
//! watched for errors.
//!
//! rustic logs an entry it cannot stat or a file it cannot read, and goes
//! on without it: the backup would succeed with files missing. The
//! wrapper remembers every such error so that the backup can fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustic_core::{
    Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, ReadSource,
    ReadSourceEntry, ReadSourceOpen, RusticResult,
};

use super::progress::Bars;

/// Errors met while reading the source, as log lines.
#[derive(Debug, Clone, Default)]
pub(super) struct Errors(Arc<Mutex<Vec<String>>>);

impl Errors {
    pub fn push(&self, e: String) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(e);
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Every entry below `src` (not `src` itself), with all metadata rustic
/// keeps: owners, modes, times, xattrs, hard links, device numbers. No
/// ignore files and no excludes: a volume is backed up whole.
pub(super) struct Watched {
    inner: LocalSource,
    bars: Bars,
    errors: Errors,
}

impl Watched {
    pub fn new(src: &Path, bars: Bars, errors: Errors) -> RusticResult<Watched> {
        let inner = LocalSource::new(
            LocalSourceSaveOptions::default(),
            &Excludes::default(),
            &LocalSourceFilterOptions::default(),
            &[src],
        )?;
        Ok(Watched { inner, bars, errors })
    }
}

impl ReadSource for Watched {
    type Open = Open;
    type Iter = Iter;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Iter {
        Iter { inner: self.inner.entries(), bars: self.bars.clone(), errors: self.errors.clone() }
    }
}

pub(super) struct Iter {
    inner: <LocalSource as ReadSource>::Iter,
    bars: Bars,
    errors: Errors,
}

impl Iterator for Iter {
    type Item = RusticResult<ReadSourceEntry<Open>>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.inner.next()? {
            Ok(ReadSourceEntry { path, node, open }) => {
                self.bars.file_done();
                let errors = &self.errors;
                let open =
                    open.map(|inner| Open { inner, path: path.clone(), errors: errors.clone() });
                Ok(ReadSourceEntry { path, node, open })
            }
            Err(e) => {
                self.errors.push(super::fail::describe(&e));
                Err(e)
            }
        })
    }
}

pub(super) struct Open {
    inner: <LocalSource as ReadSource>::Open,
    path: PathBuf,
    errors: Errors,
}

impl ReadSourceOpen for Open {
    type Reader = Reader;

    fn open(self) -> RusticResult<Reader> {
        match self.inner.open() {
            Ok(file) => Ok(Reader { inner: file, path: self.path, errors: self.errors }),
            Err(e) => {
                self.errors.push(super::fail::describe(&e));
                Err(e)
            }
        }
    }
}

pub(super) struct Reader {
    inner: std::fs::File,
    path: PathBuf,
    errors: Errors,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != std::io::ErrorKind::Interrupted {
                self.errors.push(format!("reading {}: {e}", self.path.display()));
            }
        })
    }
}
