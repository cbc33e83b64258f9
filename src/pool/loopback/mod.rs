//! The `loop` backend: each volume is a sparse image file holding its own
//! ext4 or xfs filesystem, attached to a loop device and mounted while the
//! volume is active. The image's size is a hard limit.
//!
//! ```text
//! <pool>/images/v<id>.img      a volume's image
//! <pool>/mounts/v<id>/         where it is mounted (Docker's mountpoint)
//! <pool>/snapshots/s<id>.img   a snapshot: a clone of the image
//! <pool>/staging/              work in progress; cleared at start-up
//! ```
//!
//! Loop devices are set up by ioctl with autoclear, so unmounting a volume
//! also frees its device, and a crashed daemon leaves no device behind
//! that is not still mounted. A snapshot freezes the mounted filesystem
//! (FIFREEZE), clones the image (a reflink where the host filesystem can,
//! else a sparse copy) and thaws it. Revert (only while detached) clones
//! the snapshot in `staging/` and renames it over the image.

mod img;

pub(super) use img::mkfs;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{Backend, BackendKind, Fill, FsKind, Gate, OnBytes, SnapshotView, Space, Spec};
use crate::sys::loopdev;
use crate::tree::{self, Root};

#[derive(Debug)]
pub struct LoopBackend {
    images: Root,
    mounts: Root,
    snapshots: Root,
    staging: Root,
    fs: FsKind,
    /// Whether the images' filesystem shares extents (snapshots and
    /// clones of images then cost no data), tried when the pool opens.
    reflinks: bool,
}

/// How long a snapshot, copy or revert of an unmounted volume waits for
/// other holders of its filesystem to let go.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

fn image(key: &str) -> String {
    format!("{key}.img")
}

impl LoopBackend {
    pub fn open(path: &Path, fs: FsKind) -> io::Result<Self> {
        mkfs(fs)?;
        Root::open(path)?;
        let staging = Root::open(&path.join("staging"))?;
        Ok(LoopBackend {
            images: Root::open(&path.join("images"))?,
            mounts: Root::open(&path.join("mounts"))?,
            snapshots: Root::open(&path.join("snapshots"))?,
            reflinks: staging.shares_extents(),
            staging,
            fs,
        })
    }

    /// Attaches and mounts the image of `key` if it is not mounted yet.
    fn mount(&self, key: &str) -> io::Result<PathBuf> {
        let target = self.mounts.host_path(key);
        match self.mounts.is_mounted(key) {
            Ok(true) => return Ok(target),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.mounts.create_dir(key, None, None, 0o755)?;
            }
            Err(e) => return Err(e),
        }
        // A device still on the image (a filesystem another namespace is
        // letting go of, or one unmounted from outside that is still
        // writing back) must be gone first: two devices on one image
        // would each see the other's half-written state.
        self.wait_released(key)?;
        img::mount(&self.images, &image(key), &target, false)?;
        Ok(target)
    }

    /// Detaches loop devices backed by this pool's images that nothing
    /// has mounted. Autoclear makes ours go away with their mount, so
    /// these were attached some other way (by hand, by an older daemon).
    fn detach_strays(&self) -> io::Result<()> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mounted: Vec<&str> =
            mountinfo.lines().filter_map(|l| l.split(" - ").nth(1)?.split(' ').nth(1)).collect();
        let Ok(block) = std::fs::read_dir("/sys/block") else { return Ok(()) };
        for entry in block.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file"))
            else {
                continue;
            };
            if !Path::new(backing.trim()).starts_with(self.images.path()) {
                continue;
            }
            let dev = PathBuf::from(format!("/dev/{name}"));
            if mounted.iter().any(|m| Path::new(m) == dev) {
                continue;
            }
            match loopdev::detach(&dev) {
                Ok(()) => {
                    tracing::warn!(device = %dev.display(), image = backing.trim(), "detached a stray loop device")
                }
                Err(e) => {
                    tracing::warn!(device = %dev.display(), error = %e, "cannot detach a stray loop device")
                }
            }
        }
        Ok(())
    }

    /// Whether the volume's filesystem is mounted (a missing mountpoint
    /// directory means no).
    fn mounted(&self, key: &str) -> io::Result<bool> {
        match self.mounts.is_mounted(key) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            other => other,
        }
    }

    fn unmount(&self, key: &str) -> io::Result<()> {
        if self.mounted(key)? {
            rustix::mount::unmount(
                self.mounts.host_path(key),
                rustix::mount::UnmountFlags::empty(),
            )?;
        }
        Ok(())
    }

    /// Unmounts (if mounted) and removes the work directory `dir` of
    /// `staging/`: a snapshot read for a backup, an image being filled.
    fn unmount_work(&self, dir: &str) -> io::Result<()> {
        match self.staging.is_mounted(dir) {
            Ok(true) => unmount_at(&self.staging.host_path(dir))?,
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        self.staging.remove(dir)
    }

    /// Whether a loop device still has the image of `key` attached.
    fn attached(&self, key: &str) -> bool {
        let img = self.images.host_path(&image(key));
        let Ok(block) = std::fs::read_dir("/sys/block") else { return false };
        block.flatten().any(|entry| {
            std::fs::read_to_string(entry.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim()) == img)
        })
    }

    /// Waits until the filesystem of an unmounted volume is really gone:
    /// after our unmount it lives on while another mount namespace (a
    /// container being torn down) still holds it, and only its end writes
    /// the last data back into the image. Autoclear detaches the device
    /// then, which is what this waits for.
    fn wait_released(&self, key: &str) -> io::Result<()> {
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        while self.attached(key) {
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "the filesystem of {} is still in use outside ballast's mount (a \
                         container still being torn down?); try again in a moment",
                        image(key)
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }

    /// Clones the image of `key` into `dst`/`dst_key`, frozen if mounted
    /// so that the copy is a consistent filesystem; when not mounted, only
    /// once every other holder of its filesystem has let go.
    fn clone_image(&self, key: &str, dst: &Root, dst_key: &str) -> io::Result<()> {
        let frozen = if self.mounted(key)? {
            let dir = self.mounts.open_dir_across(key)?;
            loopdev::freeze(dir.as_fd())?;
            Some(dir)
        } else {
            self.wait_released(key)?;
            None
        };
        let cloned = tree::clone_file(&self.images, &image(key), dst, dst_key);
        if let Some(dir) = frozen {
            loopdev::thaw(dir.as_fd())?;
        }
        cloned
    }

    /// Replaces the image of `key` (not mounted) with a clone of `src`/`src_key`.
    fn replace_image(
        &self,
        src: &Root,
        src_key: &str,
        key: &str,
        may_swap: Gate<'_>,
    ) -> io::Result<()> {
        self.unmount(key)?;
        self.wait_released(key)?;
        let work = image(key);
        self.staging.remove_file(&work)?;
        tree::clone_file(src, src_key, &self.staging, &work)?;
        if let Err(e) = may_swap() {
            // The refusal is the news; a leftover is cleared at start.
            let _ = self.staging.remove_file(&work);
            return Err(e);
        }
        self.staging.rename_over(&work, &self.images, &work)
    }
}

/// Unmounts what is mounted at `target`.
fn unmount_at(target: &Path) -> io::Result<()> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty())?;
    Ok(())
}

impl Backend for LoopBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Loop
    }

    fn enforces_size(&self) -> bool {
        true
    }

    fn copies_share_data(&self) -> bool {
        self.reflinks
    }

    fn create(&self, key: &str, spec: &Spec) -> io::Result<()> {
        let size = spec.size.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a loop volume needs a size")
        })?;
        img::format(&self.images, &image(key), size, spec.fs.unwrap_or(self.fs))?;
        // Set the root's owner and mode inside the new filesystem, and
        // leave it empty (no lost+found): some programs insist on that.
        let root = self.mount(key)?;
        let done = (|| {
            let _ = std::fs::remove_dir(root.join("lost+found"));
            let dir = self.mounts.open_dir_across(key)?;
            tree::set_owner_mode(dir.as_fd(), spec.uid, spec.gid, spec.mode.unwrap_or(0o755))
        })();
        self.unmount(key)?;
        // The device detaches itself once unmounted, but not at once: a
        // volume just made holds no device when Create answers.
        self.wait_released(key)?;
        done
    }

    fn copy(&self, src: &str, dst: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        let work = format!("copy-{}", image(dst));
        self.staging.remove_file(&work)?;
        self.clone_image(src, &self.staging, &work)?;
        self.unmount(dst)?;
        self.staging.rename_over(&work, &self.images, &image(dst))
    }

    fn activate(&self, key: &str) -> io::Result<PathBuf> {
        self.mount(key)
    }

    fn deactivate(&self, key: &str) -> io::Result<()> {
        self.unmount(key)
    }

    fn destroy(&self, key: &str) -> io::Result<()> {
        self.unmount(key)?;
        self.images.remove_file(&image(key))?;
        self.mounts.remove(key)
    }

    fn mountpoint(&self, key: &str) -> PathBuf {
        self.mounts.host_path(key)
    }

    /// The root of the mounted filesystem; never the empty directory
    /// beneath it.
    fn open_volume(&self, key: &str) -> io::Result<OwnedFd> {
        if !self.mounted(key)? {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the filesystem of {} is not mounted", image(key)),
            ));
        }
        self.mounts.open_dir_across(key)
    }

    /// Bytes used inside the filesystem when mounted, else the image's
    /// allocated bytes.
    fn usage(&self, key: &str) -> io::Result<u64> {
        if self.mounted(key)? {
            let dir = self.mounts.open_dir_across(key)?;
            let st = rustix::fs::fstatvfs(&dir)?;
            return Ok((st.f_blocks - st.f_bfree) * st.f_frsize);
        }
        self.images.file_usage(&image(key))
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        match self.images.file_usage(&image(key)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn snapshot(&self, key: &str, snap: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        let work = image(snap);
        self.staging.remove_file(&work)?;
        self.clone_image(key, &self.staging, &work)?;
        self.staging.rename_over(&work, &self.snapshots, &work)
    }

    fn copy_snapshot(&self, snap: &str, key: &str, _on_bytes: OnBytes<'_>) -> io::Result<()> {
        self.replace_image(&self.snapshots, &image(snap), key, &|| Ok(()))
    }

    fn revert(
        &self,
        key: &str,
        snap: &str,
        _on_bytes: OnBytes<'_>,
        may_swap: Gate<'_>,
    ) -> io::Result<()> {
        self.replace_image(&self.snapshots, &image(snap), key, may_swap)
    }

    fn delete_snapshot(&self, snap: &str) -> io::Result<()> {
        self.snapshots.remove_file(&image(snap))
    }

    /// Mounts the snapshot's image read-only in `staging/`, privately:
    /// only the backup reading it sees it, and the view's end unmounts it.
    fn read_snapshot(&self, snap: &str) -> io::Result<SnapshotView> {
        // One directory per reader: two backups of one snapshot must not
        // unmount each other's view.
        static READERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = format!("read-{snap}-{n}");
        self.unmount_work(&dir)?;
        self.staging.create_dir(&dir, None, None, 0o700)?;
        let target = self.staging.host_path(&dir);
        if let Err(e) = img::mount(&self.snapshots, &image(snap), &target, true) {
            let _ = self.staging.remove(&dir);
            return Err(e);
        }
        let staging = self.staging.try_clone()?;
        let path = target.clone();
        Ok(SnapshotView::with_release(path, move || {
            if let Err(e) = unmount_at(&target).and_then(|()| staging.remove(&dir)) {
                tracing::warn!(mount = %target.display(), error = %e, "cannot unmount a snapshot read for a backup");
            }
        }))
    }

    /// A new image of the size and filesystem of `like`'s, filled while
    /// mounted in `staging/`, then renamed into the snapshots.
    fn build_snapshot(&self, snap: &str, like: &str, fill: Fill<'_>) -> io::Result<()> {
        let size = img::size_of(&self.images, &image(like))?;
        let fs = img::fs_of(&self.images, &image(like))?;
        let (work, dir) = (image(snap), format!("fill-{snap}"));
        self.staging.remove_file(&work)?;
        self.unmount_work(&dir)?;
        let built = (|| {
            img::format(&self.staging, &work, size, fs)?;
            self.staging.create_dir(&dir, None, None, 0o700)?;
            let target = self.staging.host_path(&dir);
            img::mount(&self.staging, &work, &target, false)?;
            let _ = std::fs::remove_dir(target.join("lost+found"));
            let filled = fill(&target);
            // Unmounting writes everything back into the image.
            let unmounted = unmount_at(&target);
            filled.and(unmounted)?;
            self.staging.remove(&dir)?;
            self.staging.rename_over(&work, &self.snapshots, &work)
        })();
        if built.is_err() {
            let _ = self.unmount_work(&dir);
            let _ = self.staging.remove_file(&work);
        }
        built?;
        self.snapshots.sync()
    }

    fn snapshot_usage(&self, snap: &str) -> io::Result<u64> {
        self.snapshots.file_usage(&image(snap))
    }

    /// Fails the pool only if its staging cannot be listed: an entry that
    /// cannot be removed (not a file) is logged and left.
    fn recover(&self) -> io::Result<()> {
        for key in self.staging.keys()? {
            let cleared = if key.ends_with(".img") {
                self.staging.remove_file(&key)
            } else {
                self.unmount_work(&key)
            };
            if let Err(e) = cleared {
                tracing::warn!(entry = %self.staging.host_path(&key).display(), error = %e, "cannot clear interrupted work");
            }
        }
        self.detach_strays()
    }

    fn space(&self) -> io::Result<Space> {
        Space::of(&self.images)
    }

    fn stored_keys(&self) -> io::Result<Vec<String>> {
        Ok(self
            .images
            .keys()?
            .into_iter()
            .map(|k| k.trim_end_matches(".img").to_string())
            .collect())
    }
}
