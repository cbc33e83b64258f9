//! The only `unsafe` code in ballast: taking ownership of file descriptors
//! handed over by systemd socket activation, and the ioctls of the storage
//! backends ([`btrfs`], [`loopdev`]). Every `unsafe` block says why it is
//! sound.

pub mod btrfs;
pub mod loopdev;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

/// Tells systemd how the service is doing (`READY=1`, `STOPPING=1`) when
/// it started us as `Type=notify`; does nothing otherwise. systemd times
/// out a start that never says READY, so a failure here is only reported.
pub fn notify_systemd(state: &str) -> std::io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => notify_at(&socket, state),
        None => Ok(()),
    }
}

/// Sends `state` to the notification socket `socket`: a path, or an
/// abstract name written `@name`.
fn notify_at(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    let addr = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    sock.send_to_addr(state.as_bytes(), &addr).map(drop)
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// A listener passed by systemd, with its `FileDescriptorName=` if any.
pub struct Inherited {
    pub listener: UnixListener,
    pub name: Option<String>,
}

/// Takes the Unix listeners systemd passed with `LISTEN_PID`/`LISTEN_FDS`
/// (and `LISTEN_FDNAMES`), then clears those variables so that nothing
/// else in the process takes the same descriptors.
///
/// Must be called before any other thread starts (it edits the
/// environment), and at most once.
pub fn take_inherited_listeners() -> Vec<Inherited> {
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok()).unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    // SAFETY: called from `main` before the runtime or any other thread
    // exists, so no other thread can be reading the environment.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if !ours || !(1..=64).contains(&count) {
        return Vec::new();
    }
    (LISTEN_FDS_START..LISTEN_FDS_START + count)
        .enumerate()
        .map(|(i, fd)| {
            // SAFETY: systemd opened descriptors 3..3+LISTEN_FDS for this
            // very process (LISTEN_PID matched) and nothing else in the
            // process owns them; the variables are cleared above, so each
            // is wrapped exactly once.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
            Inherited { listener: UnixListener::from(owned), name: names.get(i).cloned() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    #[test]
    fn notifications_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        super::notify_at(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("ballast-notify-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        super::notify_at(format!("@{name}").as_ref(), "STOPPING=1").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        let gone = dir.path().join("gone");
        assert!(super::notify_at(gone.as_os_str(), "READY=1").is_err());
    }
}
