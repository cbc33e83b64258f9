//! Image files: making one (a sparse file and mkfs), telling its
//! filesystem from its superblock, and mounting it through a loop device,
//! read-write for a volume or read-only for a backup to read a snapshot.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pool::FsKind;
use crate::sys::loopdev;
use crate::tree::Root;

/// The mkfs program for a filesystem, if it is installed.
pub(in crate::pool) fn mkfs(fs: FsKind) -> io::Result<PathBuf> {
    let name = format!("mkfs.{}", fs.as_str());
    let dirs = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/sbin:/usr/bin:/bin".into());
    dirs.split(':').map(|d| Path::new(d).join(&name)).find(|p| p.is_file()).ok_or_else(|| {
        let package = match fs {
            FsKind::Ext4 => "e2fsprogs",
            FsKind::Xfs => "xfsprogs",
        };
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} is not installed (apt-get install {package})"),
        )
    })
}

/// Makes `root`/`name` a sparse image of `size` bytes holding a new,
/// empty `fs` filesystem.
pub(super) fn format(root: &Root, name: &str, size: u64, fs: FsKind) -> io::Result<()> {
    drop(root.create_file(name, size)?);
    let mut cmd = Command::new(mkfs(fs)?);
    match fs {
        // 4 KiB blocks, as the loop device's; inode tables and journal
        // initialised now rather than in the background, where they
        // would compete with the first writes.
        FsKind::Ext4 => cmd.args([
            "-q",
            "-F",
            "-m",
            "0",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
        ]),
        FsKind::Xfs => cmd.args(["-q", "-f", "-s", "size=4096"]),
    };
    let out = cmd.arg(root.host_path(name)).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "mkfs.{} failed: {}",
            fs.as_str(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The filesystem inside image `root`/`name`, from its superblock.
pub(super) fn fs_of(root: &Root, name: &str) -> io::Result<FsKind> {
    let fd = root.open_file(name)?;
    let mut magic = [0u8; 4];
    rustix::io::pread(&fd, &mut magic, 0)?;
    if &magic == b"XFSB" {
        return Ok(FsKind::Xfs);
    }
    let mut ext = [0u8; 2];
    rustix::io::pread(&fd, &mut ext, 1024 + 0x38)?;
    if ext == [0x53, 0xEF] {
        return Ok(FsKind::Ext4);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("image {name} holds no ext4 or xfs filesystem"),
    ))
}

/// The length of image `root`/`name`.
pub(super) fn size_of(root: &Root, name: &str) -> io::Result<u64> {
    Ok(crate::tree::stat_size(&rustix::fs::fstat(root.open_file(name)?)?))
}

/// Mounts image `root`/`name` on `target` through a new loop device.
/// Read-only mounts replay no journal (`noload`, `norecovery`): a
/// snapshot's image is a frozen filesystem, and it must stay as it is;
/// xfs also ignores the UUID it shares with the volume it was cloned from.
pub(super) fn mount(root: &Root, name: &str, target: &Path, read_only: bool) -> io::Result<()> {
    use rustix::mount::MountFlags;
    let fs = fs_of(root, name)?;
    let img = root.open_file(name)?;
    let (dev, _device) = loopdev::attach(img.as_fd(), read_only)?;
    let (flags, data) = match (read_only, fs) {
        (false, _) => (MountFlags::NOATIME, None),
        (true, FsKind::Ext4) => (MountFlags::NOATIME | MountFlags::RDONLY, Some(c"noload")),
        (true, FsKind::Xfs) => {
            (MountFlags::NOATIME | MountFlags::RDONLY, Some(c"norecovery,nouuid"))
        }
    };
    // The device keeps the image open; with autoclear it lets go once the
    // filesystem is unmounted and `_device` is closed.
    rustix::mount::mount(&dev, target, fs.as_str(), flags, data).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mounting {} on {}: {e}", dev.display(), target.display()),
        )
    })
}
