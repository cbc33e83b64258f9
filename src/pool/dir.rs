//! The `dir` backend: each volume is a plain directory under
//! `<pool>/volumes/<key>`. Nothing to attach, so activate and deactivate
//! only check that the directory is there. It cannot enforce sizes.

use std::io;
use std::path::{Path, PathBuf};

use super::{Backend, Spec};
use crate::config::BackendKind;
use crate::tree::Root;

#[derive(Debug)]
pub struct DirBackend {
    volumes: Root,
}

impl DirBackend {
    pub fn open(path: &Path) -> io::Result<Self> {
        Root::open(path)?;
        Ok(DirBackend {
            volumes: Root::open(&path.join("volumes"))?,
        })
    }
}

impl Backend for DirBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Dir
    }

    fn enforces_size(&self) -> bool {
        false
    }

    fn create(&self, key: &str, spec: &Spec) -> io::Result<()> {
        self.volumes
            .create_dir(key, spec.uid, spec.gid, spec.mode.unwrap_or(0o755))?;
        Ok(())
    }

    fn copy(&self, src: &str, dst: &str) -> io::Result<()> {
        self.volumes.copy_into(src, dst)
    }

    fn activate(&self, key: &str) -> io::Result<PathBuf> {
        self.volumes.open_dir(key).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "volume directory {} is unusable: {e}",
                    self.mountpoint(key).display()
                ),
            )
        })?;
        Ok(self.mountpoint(key))
    }

    fn deactivate(&self, _key: &str) -> io::Result<()> {
        Ok(())
    }

    fn destroy(&self, key: &str) -> io::Result<()> {
        self.volumes.remove(key)
    }

    fn mountpoint(&self, key: &str) -> PathBuf {
        self.volumes.host_path(key)
    }

    fn usage(&self, key: &str) -> io::Result<u64> {
        self.volumes.usage(key)
    }
}
