//! Exposed mountpoints (`serve --mount-root DIR`). A managed plugin's
//! mounts reach Docker only from beneath its propagated mount, and that
//! directory is Docker's: `docker plugin rm` deletes it. So the state
//! lives elsewhere and Docker is handed `DIR/<volume id>`, a bind of the
//! volume's directory made on its first Mount and taken off after its
//! last Unmount, while the mount count is recorded.
//!
//! Binds exist only while a volume has mounts, and revert, restore,
//! remove and deallocate refuse a mounted volume: nothing ever swaps a
//! directory that is bound here. Every Mount checks its bind again, and
//! start-up puts the binds back in line with the recorded counts before
//! the sockets answer (after `kill -9` they are still there; after a
//! plugin disable and enable the propagated mount is empty).

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::{Ballast, Storage};
use crate::public_id::Kind;
use crate::tree::Root;
use crate::volume::Volume;
use crate::{Error, Result};

/// The directory of exposed mountpoints.
#[derive(Debug)]
pub(super) struct Exposed {
    root: Root,
}

impl Exposed {
    /// Opens `dir`, which must exist. One holding a metadata store is a
    /// state directory in the place of the mount root (the layout of an
    /// earlier plugin, whose state Docker kept in its propagated mount):
    /// refused, rather than start empty beside volumes that `docker
    /// plugin rm` would delete.
    pub(super) fn open(dir: &Path) -> std::result::Result<Exposed, String> {
        if !dir.is_absolute() {
            // Docker mounts what it is handed from its own directory.
            return Err(format!("--mount-root {}: must be absolute", dir.display()));
        }
        if dir.join("ballast.db").exists() {
            return Err(format!(
                "--mount-root {}: it holds a state directory (ballast.db); move its contents \
                 into the state directory and start again",
                dir.display()
            ));
        }
        let root = Root::open_existing(dir).map_err(|e| format!("--mount-root: {e}"))?;
        Ok(Exposed { root })
    }

    /// `DIR/<volume id>`.
    pub(super) fn path(&self, v: &Volume) -> PathBuf {
        self.root.host_path(&v.public_id())
    }
}

impl Ballast {
    /// The mountpoint Docker is given for `v`: its exposed one with
    /// `--mount-root`, else where its files are.
    pub fn docker_mountpoint(&self, v: &Volume) -> Option<PathBuf> {
        match &self.inner.exposed {
            Some(exposed) => Some(exposed.path(v)),
            None => self.mountpoint(v),
        }
    }

    /// Binds the volume's directory on its exposed mountpoint (nothing to
    /// do without `--mount-root`). For a writer of `v` under its lock.
    pub(super) fn expose(&self, storage: &Storage<'_>, v: &Volume) -> Result<()> {
        let Some(exposed) = &self.inner.exposed else { return Ok(()) };
        let failed = |e| Error::internal(format!("exposing volume {:?}", v.name), e);
        let dir = storage.open_volume(&v.storage_key()).map_err(failed)?;
        exposed.root.bind(&v.public_id(), dir.as_fd()).map_err(failed)?;
        if super::cluster::access_of(v).read_only() {
            exposed.root.make_read_only(&v.public_id()).map_err(failed)?;
        }
        Ok(())
    }

    /// Read-only access modes are kept by a read-only bind, which only
    /// exposed mountpoints have.
    pub(super) fn check_access(
        &self,
        opts: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let mode = super::cluster::access_in(opts);
        if mode.read_only() && self.inner.exposed.is_none() {
            return Err(Error::InvalidInput(format!(
                "option access-mode={}: read-only volumes need `serve --mount-root`, where \
                 ballast hands Docker a read-only bind (the managed plugin has one)",
                mode.as_str()
            )));
        }
        Ok(())
    }

    /// Takes the volume's exposed mountpoint away; missing is fine. For a
    /// writer of `v` under its lock.
    pub(super) fn withdraw(&self, v: &Volume) -> Result<()> {
        let Some(exposed) = &self.inner.exposed else { return Ok(()) };
        exposed
            .root
            .unbind(&v.public_id())
            .map_err(|e| Error::internal(format!("withdrawing volume {:?}", v.name), e))
    }

    /// At start-up, before the sockets answer (so no lock is needed yet):
    /// a bind for every volume with mounts, none for any other. A bind
    /// that cannot be made (its pool unavailable, its host directory
    /// swapped for a symlink) is logged and left out; the next Mount
    /// tries again and says why.
    pub(super) fn restore_exposed(&self) {
        let Some(exposed) = &self.inner.exposed else { return };
        let mut mounted = HashSet::new();
        for v in self.list().into_iter().filter(|v| v.mount_count() > 0) {
            mounted.insert(v.public_id());
            match self.storage(&v).and_then(|s| self.expose(&s, &v)) {
                Ok(()) => {
                    tracing::info!(volume = %v.name, path = %exposed.path(&v).display(), "mountpoint exposed")
                }
                Err(e) => {
                    tracing::error!(volume = %v.name, error = %e, "cannot expose the mountpoint of a mounted volume");
                    if let Err(e) = exposed.root.unbind(&v.public_id()) {
                        tracing::error!(volume = %v.name, error = %e, "cannot withdraw its mountpoint");
                    }
                }
            }
        }
        let entries = match exposed.root.keys() {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the mount root");
                return;
            }
        };
        // Left by a crash between a bind and its record, or by a volume
        // unmounted while the daemon was down. Entries not named like a
        // volume are not ours.
        let stale = entries.into_iter().filter(|k| Kind::Volume.parse(k).is_some());
        for key in stale.filter(|k| !mounted.contains(k)) {
            match exposed.root.unbind(&key) {
                Ok(()) => tracing::info!(entry = %key, "stale exposed mountpoint withdrawn"),
                Err(e) => {
                    tracing::warn!(entry = %key, error = %e, "cannot withdraw a stale exposed mountpoint")
                }
            }
        }
    }
}
