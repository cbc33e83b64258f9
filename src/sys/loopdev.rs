//! Loop devices and filesystem freezing, by ioctl: `LOOP_CTL_GET_FREE`
//! on `/dev/loop-control`, `LOOP_CONFIGURE` with autoclear (the device
//! detaches itself once its filesystem is unmounted), `FIFREEZE`/`FITHAW`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use linux_raw_sys::ioctl as nr;
use linux_raw_sys::loop_device as raw;
use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, Updater, ioctl};

/// `LOOP_CTL_GET_FREE`: no argument; the free device's number is the
/// ioctl's return value, which rustix's ready-made patterns drop.
struct GetFree;

// SAFETY: LOOP_CTL_GET_FREE takes no argument (the pointer is null and
// never read) and returns the device number as the ioctl's result.
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        raw::LOOP_CTL_GET_FREE as Opcode
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        // The free device's number: never negative (errors are already
        // taken out by rustix).
        u32::try_from(out).map_err(|_| rustix::io::Errno::RANGE)
    }
}

/// Attaches `image` to a free loop device with autoclear (read-only if
/// asked), and returns the device's path and an open handle on it (drop
/// it once the device is mounted, so that the unmount detaches it).
pub fn attach(image: BorrowedFd<'_>, read_only: bool) -> io::Result<(PathBuf, OwnedFd)> {
    let ctl = rustix::fs::open("/dev/loop-control", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    // Another process can take the free device between the two calls:
    // then LOOP_CONFIGURE says EBUSY and we ask again.
    for _ in 0..16 {
        // SAFETY: see `GetFree`.
        let n = unsafe { ioctl(&ctl, GetFree) }?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        // SAFETY: plain integers and byte arrays; all-zero is valid.
        let mut config: raw::loop_config = unsafe { std::mem::zeroed() };
        // An open descriptor is never negative.
        config.fd = u32::try_from(image.as_raw_fd())
            .map_err(|_| io::Error::from(rustix::io::Errno::BADF))?;
        // 4 KiB blocks, as the filesystems made in the images use. I/O to
        // the image stays buffered (the kernel's default, and what
        // `mount -o loop` does): measured against the disk holding the
        // images it loses nothing, and it is the well-trodden path.
        config.block_size = 4096;
        config.info.lo_flags = raw::LO_FLAGS_AUTOCLEAR as u32;
        if read_only {
            config.info.lo_flags |= raw::LO_FLAGS_READ_ONLY as u32;
        }
        // SAFETY: LOOP_CONFIGURE reads a loop_config, which `config` is,
        // holding an open image fd borrowed for the call.
        match unsafe {
            ioctl(&dev, Updater::<{ raw::LOOP_CONFIGURE as Opcode }, _>::new(&mut config))
        } {
            Ok(()) => return Ok((path, dev)),
            Err(rustix::io::Errno::BUSY) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("no free loop device after 16 tries"))
}

/// Detaches the loop device at `dev` (`/dev/loopN`).
pub fn detach(dev: &std::path::Path) -> io::Result<()> {
    let fd = rustix::fs::open(dev, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    // SAFETY: LOOP_CLR_FD takes no argument.
    unsafe { ioctl(&fd, rustix::ioctl::NoArg::<{ raw::LOOP_CLR_FD as Opcode }>::new()) }?;
    Ok(())
}

/// Freezes the filesystem mounted where `dir` is open: writes are held
/// and everything is flushed, so the device below is consistent.
pub fn freeze(dir: BorrowedFd<'_>) -> io::Result<()> {
    let mut zero: i32 = 0;
    // SAFETY: FIFREEZE takes an int argument it does not use; `zero` lives
    // for the call.
    unsafe { ioctl(dir.as_fd(), Updater::<{ nr::FIFREEZE as Opcode }, _>::new(&mut zero)) }?;
    Ok(())
}

/// Undoes [`freeze`].
pub fn thaw(dir: BorrowedFd<'_>) -> io::Result<()> {
    let mut zero: i32 = 0;
    // SAFETY: as for FIFREEZE.
    unsafe { ioctl(dir.as_fd(), Updater::<{ nr::FITHAW as Opcode }, _>::new(&mut zero)) }?;
    Ok(())
}
