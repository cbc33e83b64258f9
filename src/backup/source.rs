//! The backup's source: rustic's local walk, counted for progress and
//! watched for errors.
//!
//! rustic logs an entry it cannot stat or a file it cannot read, and goes
//! on without it: the backup would succeed with files missing. The
//! wrapper remembers every such error so that the backup can fail.
//!
//! Files are opened here, not by rustic (which opens by path, following
//! symlinks and waiting on a FIFO): beneath the source by descriptor, and
//! only if the file is still the one listed.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustic_core::{
    ErrorKind, Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, ReadSource,
    ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
};

use super::progress::Bars;
use crate::tree::{Root, open_listed};

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
    at: Arc<At>,
    bars: Bars,
    errors: Errors,
}

/// The source, open, and its device: every file below it is on it.
struct At {
    root: Root,
    dev: u64,
}

impl Watched {
    pub fn new(src: &Path, bars: Bars, errors: Errors) -> RusticResult<Watched> {
        let inner = LocalSource::new(
            LocalSourceSaveOptions::default(),
            &Excludes::default(),
            &LocalSourceFilterOptions::default(),
            &[src],
        )?;
        let io = |e: std::io::Error| {
            RusticError::with_source(ErrorKind::InputOutput, "opening the source {path}", e)
                .attach_context("path", src.display().to_string())
        };
        let root = Root::open_existing(src).map_err(io)?;
        #[allow(clippy::unnecessary_cast)] // not `u64` on every target
        let dev = rustix::fs::fstat(root.fd()).map_err(|e| io(e.into()))?.st_dev as u64;
        Ok(Watched { inner, at: Arc::new(At { root, dev }), bars, errors })
    }
}

impl ReadSource for Watched {
    type Open = Open;
    type Iter = Iter;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Iter {
        Iter {
            inner: self.inner.entries(),
            at: self.at.clone(),
            bars: self.bars.clone(),
            errors: self.errors.clone(),
        }
    }
}

pub(super) struct Iter {
    inner: <LocalSource as ReadSource>::Iter,
    at: Arc<At>,
    bars: Bars,
    errors: Errors,
}

impl Iterator for Iter {
    type Item = RusticResult<ReadSourceEntry<Open>>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.inner.next()? {
            Ok(ReadSourceEntry { path, node, open }) => {
                self.bars.file_done();
                let open = open.map(|_| Open {
                    at: self.at.clone(),
                    path: path.clone(),
                    inode: node.meta.inode,
                    errors: self.errors.clone(),
                });
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
    at: Arc<At>,
    path: PathBuf,
    /// The inode the listing found there.
    inode: u64,
    errors: Errors,
}

impl ReadSourceOpen for Open {
    type Reader = Reader;

    fn open(self) -> RusticResult<Reader> {
        let at = &self.at.root;
        let opened = match self.path.strip_prefix(at.path()) {
            Ok(rel) => open_listed(at.fd().as_fd(), rel, Some((self.at.dev, self.inode)))
                .map_err(|e| format!("reading {}: {e}", self.path.display())),
            Err(_) => Err(format!("{} is not below the source", self.path.display())),
        };
        match opened {
            Ok(Some((file, _))) => {
                Ok(Reader { inner: file.into(), path: self.path, errors: self.errors })
            }
            Ok(None) => Err(self.fail(format!(
                "{} changed while being read: it is no longer the regular file listed",
                self.path.display()
            ))),
            Err(why) => Err(self.fail(why)),
        }
    }
}

impl Open {
    fn fail(&self, why: String) -> Box<RusticError> {
        let e =
            RusticError::new(ErrorKind::InputOutput, "{why}").attach_context("why", why.clone());
        self.errors.push(why);
        e
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::testing::{swap_for_fifo, swap_for_symlink, within};

    /// Files listed, then swapped before rustic opens them: for a FIFO,
    /// a symlink out of the source, and another file. Each open ends at
    /// once, reads nothing, and is an error the backup fails with.
    #[test]
    fn a_file_swapped_after_the_listing_is_reported_not_waited_on_or_followed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for name in ["fifo", "link", "other", "kept"] {
            std::fs::write(src.join(name), b"mine").unwrap();
        }
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"the host's").unwrap();
        let errors = Errors::default();
        let source = Watched::new(&src, Bars::default(), errors.clone()).unwrap();
        let mut listed: Vec<_> = source.entries().map(Result::unwrap).collect();
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        swap_for_fifo(&src.join("fifo"));
        swap_for_symlink(&src.join("link"), &outside);
        // Kept, so that the new file cannot reuse its inode number.
        std::fs::rename(src.join("other"), dir.path().join("old")).unwrap();
        std::fs::write(src.join("other"), b"another file").unwrap();

        let read = within(10, "opening swapped files", move || {
            let read = |e: ReadSourceEntry<Open>| {
                let mut data = Vec::new();
                e.open?.open().ok()?.read_to_end(&mut data).ok()?;
                Some(data)
            };
            listed.into_iter().map(read).collect::<Vec<_>>()
        });
        // Sorted: fifo, kept, link, other.
        assert_eq!(read, [None, Some(b"mine".to_vec()), None, None]);
        let errors = errors.take();
        assert_eq!(errors.len(), 3, "{errors:?}");
        for (e, name) in errors.iter().zip(["fifo", "link", "other"]) {
            assert!(e.contains(name) && e.contains("changed while being read"), "{e}");
        }
    }
}
