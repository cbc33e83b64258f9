//! btrfs ioctls: subvolumes, snapshots, quota groups. Each wrapper takes
//! file descriptors and names (never paths), checks the name fits the
//! kernel's buffer, and returns `io::Result`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use linux_raw_sys::btrfs as raw;
use linux_raw_sys::ioctl as nr;
use rustix::ioctl::{Updater, ioctl};

/// The limit value that means "none".
pub const NO_LIMIT: u64 = u64::MAX;

/// `statfs.f_type` of a btrfs filesystem.
pub const SUPER_MAGIC: i64 = 0x9123_683E;

/// Copies `name` into a kernel name buffer, refusing names that would not
/// fit with their NUL or that hold a NUL or a slash.
fn fill_name(buf: &mut [std::ffi::c_char], name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= buf.len() || name.bytes().any(|b| b == 0 || b == b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad subvolume name {name:?}"),
        ));
    }
    for (dst, src) in buf.iter_mut().zip(name.bytes()) {
        // The byte itself, whether `c_char` is signed on this target or not.
        *dst = std::ffi::c_char::from_ne_bytes([src]);
    }
    buf[name.len()] = 0;
    Ok(())
}

fn vol_args(name: &str) -> io::Result<raw::btrfs_ioctl_vol_args> {
    // SAFETY: the struct is plain integers and bytes; all-zero is valid.
    let mut args: raw::btrfs_ioctl_vol_args = unsafe { std::mem::zeroed() };
    fill_name(&mut args.name, name)?;
    Ok(args)
}

/// Creates the empty subvolume `name` in the directory `dir`.
pub fn subvol_create(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut args = vol_args(name)?;
    // SAFETY: BTRFS_IOC_SUBVOL_CREATE reads a btrfs_ioctl_vol_args, which
    // `args` is, with a NUL-terminated name (checked by `fill_name`); the
    // pointer lives for the call.
    unsafe { ioctl(dir, Updater::<{ nr::BTRFS_IOC_SUBVOL_CREATE }, _>::new(&mut args)) }?;
    Ok(())
}

/// Snapshots the subvolume open as `src` into `dir`/`name`, read-only or
/// writable. O(1): no data is copied.
pub fn snapshot(
    src: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &str,
    readonly: bool,
) -> io::Result<()> {
    // SAFETY: plain integers, bytes and unions of them; all-zero is valid.
    let mut args: raw::btrfs_ioctl_vol_args_v2 = unsafe { std::mem::zeroed() };
    args.fd = src.as_fd().as_raw_fd_i64();
    args.flags = if readonly { u64::from(raw::BTRFS_SUBVOL_RDONLY) } else { 0 };
    // SAFETY: `name` is the active member of this union for SNAP_CREATE_V2.
    fill_name(unsafe { &mut args.__bindgen_anon_2.name }, name)?;
    // SAFETY: BTRFS_IOC_SNAP_CREATE_V2 reads a btrfs_ioctl_vol_args_v2 with
    // a valid source fd (borrowed for the call), flags without
    // QGROUP_INHERIT (so the qgroup pointer is unused), and a
    // NUL-terminated name.
    unsafe { ioctl(dir, Updater::<{ nr::BTRFS_IOC_SNAP_CREATE_V2 }, _>::new(&mut args)) }?;
    Ok(())
}

/// Deletes the subvolume `name` in `dir`.
pub fn subvol_delete(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut args = vol_args(name)?;
    // SAFETY: BTRFS_IOC_SNAP_DESTROY reads a btrfs_ioctl_vol_args with a
    // NUL-terminated name; the pointer lives for the call.
    unsafe { ioctl(dir, Updater::<{ nr::BTRFS_IOC_SNAP_DESTROY }, _>::new(&mut args)) }?;
    Ok(())
}

/// Turns quota groups on for the filesystem of `fd` (idempotent).
pub fn quota_enable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut args =
        raw::btrfs_ioctl_quota_ctl_args { cmd: u64::from(raw::BTRFS_QUOTA_CTL_ENABLE), status: 0 };
    // SAFETY: BTRFS_IOC_QUOTA_CTL reads and writes a
    // btrfs_ioctl_quota_ctl_args, which `args` is.
    match unsafe { ioctl(fd, Updater::<{ nr::BTRFS_IOC_QUOTA_CTL }, _>::new(&mut args)) } {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Limits the referenced bytes of the subvolume open as `subvol`.
pub fn qgroup_limit(subvol: BorrowedFd<'_>, max_bytes: u64) -> io::Result<()> {
    let mut args = raw::btrfs_ioctl_qgroup_limit_args {
        qgroupid: 0, // 0 = the qgroup of the subvolume the fd is in
        lim: raw::btrfs_qgroup_limit {
            flags: u64::from(raw::BTRFS_QGROUP_LIMIT_MAX_RFER),
            max_rfer: max_bytes,
            max_excl: 0,
            rsv_rfer: 0,
            rsv_excl: 0,
        },
    };
    // SAFETY: BTRFS_IOC_QGROUP_LIMIT reads a btrfs_ioctl_qgroup_limit_args,
    // which `args` is; the pointer lives for the call.
    unsafe { ioctl(subvol, Updater::<{ nr::BTRFS_IOC_QGROUP_LIMIT }, _>::new(&mut args)) }?;
    Ok(())
}

/// The id of the subvolume `fd` is in.
pub fn subvol_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: plain integers and bytes; all-zero is valid.
    let mut args: raw::btrfs_ioctl_ino_lookup_args = unsafe { std::mem::zeroed() };
    args.objectid = u64::from(raw::BTRFS_FIRST_FREE_OBJECTID);
    // SAFETY: BTRFS_IOC_INO_LOOKUP reads and writes a
    // btrfs_ioctl_ino_lookup_args; treeid 0 asks for the fd's own tree,
    // which the kernel writes back.
    unsafe { ioctl(fd, Updater::<{ nr::BTRFS_IOC_INO_LOOKUP }, _>::new(&mut args)) }?;
    Ok(args.treeid)
}

/// What the quota tree says about one subvolume's qgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Qgroup {
    /// Bytes referenced by the subvolume.
    pub referenced: u64,
    /// The referenced-bytes limit, if one is set.
    pub limit: Option<u64>,
}

/// Reads the qgroup of subvolume `id` from the quota tree of the
/// filesystem of `fd`; `None` when quotas are off or it has no qgroup.
pub fn qgroup(fd: BorrowedFd<'_>, id: u64) -> io::Result<Option<Qgroup>> {
    // SAFETY: plain integers and bytes; all-zero is valid.
    let mut args: raw::btrfs_ioctl_search_args = unsafe { std::mem::zeroed() };
    args.key.tree_id = u64::from(raw::BTRFS_QUOTA_TREE_OBJECTID);
    args.key.min_objectid = 0;
    args.key.max_objectid = 0; // level-0 qgroups sit at objectid 0
    args.key.min_offset = id;
    args.key.max_offset = id;
    args.key.min_type = raw::BTRFS_QGROUP_INFO_KEY;
    args.key.max_type = raw::BTRFS_QGROUP_LIMIT_KEY;
    args.key.max_transid = u64::MAX;
    args.key.nr_items = 16;
    // SAFETY: BTRFS_IOC_TREE_SEARCH reads the key and fills `buf` with at
    // most `nr_items` (header, item) pairs, writing the count back; it
    // never writes past `buf`.
    match unsafe { ioctl(fd, Updater::<{ nr::BTRFS_IOC_TREE_SEARCH }, _>::new(&mut args)) } {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(None), // no quota tree: quotas are off
        Err(e) => return Err(e.into()),
    }
    // SAFETY: `buf` is plain bytes; view it as u8 for parsing.
    let buf: &[u8] =
        unsafe { std::slice::from_raw_parts(args.buf.as_ptr().cast::<u8>(), args.buf.len()) };
    let mut found: Option<Qgroup> = None;
    let mut pos = 0usize;
    let header = std::mem::size_of::<raw::btrfs_ioctl_search_header>();
    for _ in 0..args.key.nr_items {
        let Some(h) = buf.get(pos..pos + header) else { break };
        let le = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or_default());
        let offset = le(16);
        let kind = u32::from_ne_bytes(h[24..28].try_into().unwrap_or_default());
        let len = u32::from_ne_bytes(h[28..32].try_into().unwrap_or_default()) as usize;
        let item = buf.get(pos + header..pos + header + len).unwrap_or_default();
        pos += header + len;
        let field = |n: usize| {
            item.get(n * 8..n * 8 + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        };
        if offset != id {
            continue;
        }
        let q = found.get_or_insert_with(Qgroup::default);
        match kind {
            raw::BTRFS_QGROUP_INFO_KEY => q.referenced = field(1).unwrap_or(0), // generation, rfer, …
            raw::BTRFS_QGROUP_LIMIT_KEY => {
                let (flags, max_rfer) = (field(0).unwrap_or(0), field(1).unwrap_or(0));
                if flags & u64::from(raw::BTRFS_QGROUP_LIMIT_MAX_RFER) != 0 && max_rfer != NO_LIMIT
                {
                    q.limit = Some(max_rfer);
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

/// An fd as the kernel's 64-bit field wants it.
trait RawFd64 {
    fn as_raw_fd_i64(&self) -> i64;
}

impl RawFd64 for BorrowedFd<'_> {
    fn as_raw_fd_i64(&self) -> i64 {
        use std::os::fd::AsRawFd;
        i64::from(self.as_raw_fd())
    }
}
