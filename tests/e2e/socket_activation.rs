//! The daemon under socket activation, as the packaged units start it:
//! `systemd-socket-activate` opens the sockets and starts `ballast serve`
//! on the first connection. The daemon serves the sockets it is given,
//! says when a config setting cannot apply to them, and refuses to start
//! when given a socket no flag names (Docker would wait on it forever).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Conn, call, root_or_skip, skip};

/// `systemd-socket-activate` listening on `sockets`, running `ballast
/// serve` with plugin socket `p.sock` and admin socket `a.sock` in `dir`.
fn activate(dir: &Path, sockets: &[&str], config: &str) -> Option<Child> {
    if Command::new("sh")
        .args(["-c", "command -v systemd-socket-activate"])
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        skip("systemd-socket-activate is not installed (apt-get install systemd)");
        return None;
    }
    std::fs::write(dir.join("ballast.toml"), config).unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    for s in sockets {
        cmd.arg("-l").arg(dir.join(s));
    }
    cmd.arg("--")
        .arg(env!("CARGO_BIN_EXE_ballast"))
        .arg("serve")
        .arg("--plugin-socket")
        .arg(dir.join("p.sock"))
        .arg("--admin-socket")
        .arg(dir.join("a.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--config")
        .arg(dir.join("ballast.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap());
    let child = cmd.spawn().unwrap();
    crate::harness::wait_until("the activated sockets", || {
        sockets.iter().all(|s| dir.join(s).exists())
    });
    Some(child)
}

/// Waits (bounded) for `child` to exit; whether it failed.
fn exit_failed(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return !status.success();
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sockets_passed_by_systemd_are_served_and_a_stray_one_stops_start_up() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = "[admin]\nsocket_group = \"root\"\n";
    let Some(mut daemon) = activate(dir.path(), &["p.sock", "a.sock"], config) else { return };
    // The first call starts the daemon, which answers it on the socket
    // it was handed, and the admin socket too.
    let (status, body) = call(&dir.path().join("p.sock"), "Plugin.Activate", "");
    assert_eq!((status, &body["Implements"][0]), (200, &serde_json::json!("VolumeDriver")));
    let (status, _, _) = Conn::new(&dir.path().join("a.sock")).request("GET", "/v1", "");
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("socket_group is not applied"), "{log}");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&daemon),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(
        !exit_failed(&mut daemon),
        "{}",
        std::fs::read_to_string(dir.path().join("log")).unwrap()
    );

    // One socket more than the flags name: start-up stops and says which.
    let dir = tempfile::tempdir().unwrap();
    let Some(mut daemon) = activate(dir.path(), &["p.sock", "a.sock", "x.sock"], "") else {
        return;
    };
    let _ = std::os::unix::net::UnixStream::connect(dir.path().join("p.sock"));
    assert!(exit_failed(&mut daemon), "the daemon started with a stray socket");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let stray = dir.path().join("x.sock");
    assert!(log.contains(&format!("systemd passed the socket {}", stray.display())), "{log}");
}
