//! Scratch filesystems made for one test.

#[allow(unused_imports)]
use super::*;

/// loop-mounted; unmounted (and so detached) on drop.
pub struct ScratchFs {
    pub mnt: PathBuf,
    /// Holds the image and the mountpoint; removed after the unmount.
    _dir: tempfile::TempDir,
}

impl ScratchFs {
    /// A btrfs filesystem of `mib` MiB, or `None` (after SKIPPED) when
    /// btrfs-progs is missing outside CI.
    pub fn btrfs(mib: u64) -> Option<ScratchFs> {
        ScratchFs::new("btrfs", "btrfs-progs", mib)
    }

    /// An xfs filesystem (with reflinks) of `mib` MiB.
    pub fn xfs(mib: u64) -> Option<ScratchFs> {
        ScratchFs::new("xfs", "xfsprogs", mib)
    }

    fn new(fs: &str, package: &str, mib: u64) -> Option<ScratchFs> {
        let mkfs = format!("mkfs.{fs}");
        if !have(&mkfs) {
            skip(&format!("{mkfs} is not installed (apt-get install {package})"));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
        let out = Command::new(&mkfs).arg("-q").arg(&img).output().unwrap();
        assert!(out.status.success(), "{mkfs}: {}", String::from_utf8_lossy(&out.stderr));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt).output().unwrap();
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
        Some(ScratchFs { mnt, _dir: dir })
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        // Lazy: a daemon parked until the process exits may still hold it.
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// A tmpfs of `mib` MiB at `dir/fs`, unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn new(dir: &Path, mib: u64) -> Tmpfs {
        let mnt = dir.join("fs");
        std::fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs");
        Tmpfs(mnt)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
