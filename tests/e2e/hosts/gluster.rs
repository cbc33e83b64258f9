//! A GlusterFS volume the hosts share, served by the test's own glusterd.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::Host;
use crate::harness::spawn_until_exit;

/// Every volume of the tests starts so; the ones an earlier run left
/// (it crashed before its drops) are removed on the first use.
const PREFIX: &str = "ballast-e2e-";

/// This machine's name: glusterd refuses bricks on 127.0.0.1 or
/// `localhost`, but takes the host name (which resolves to loopback).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// The gluster CLI without prompts; retried while another transaction
/// (another test's create or stop) holds glusterd's cluster lock.
fn gluster(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("gluster")
            .arg("--mode=script")
            .args(args)
            .output()
            .expect("running gluster");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        let busy = err.contains("another transaction") || err.contains("locking failed");
        if out.status.success() || !busy || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn gluster_ok(args: &[&str]) -> String {
    let out = gluster(args);
    assert!(
        out.status.success(),
        "gluster {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// glusterd, started once per run unless one already answers (a system
/// one, or one an earlier run left); a started one lives as long as this
/// test process.
fn glusterd() {
    static UP: OnceLock<Mutex<Option<Child>>> = OnceLock::new();
    UP.get_or_init(|| {
        let answers = || gluster(&["pool", "list"]).status.success();
        if answers() {
            remove_stale_volumes();
            return Mutex::new(None);
        }
        // -N: in the foreground, so that the parent-death signal reaches
        // it. Its state stays in /var/lib/glusterd (there can be only one
        // glusterd per machine: it listens on port 24007).
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--", "glusterd", "-N"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_until_exit(cmd);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !answers() {
            assert!(
                Instant::now() < deadline,
                "glusterd did not answer within 90 s; see /var/log/glusterfs/glusterd.log"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        remove_stale_volumes();
        Mutex::new(Some(child))
    });
}

fn remove_stale_volumes() {
    let list = gluster_ok(&["volume", "list"]);
    for vol in list.lines().map(str::trim).filter(|v| v.starts_with(PREFIX)) {
        // Brick processes of a stopped volume are gone; a started one's
        // are stopped here (force: even if they are half dead).
        gluster(&["volume", "stop", vol, "force"]);
        gluster(&["volume", "delete", vol]);
    }
}

/// One single-brick GlusterFS volume with a name unique to the test and
/// the run, its brick in a temporary directory; stopped and deleted when
/// dropped. Hosts mount it with the FUSE client, as a real cluster's
/// nodes would mount their shared volume.
pub struct Gluster {
    pub volume: String,
    /// Removed after the volume is deleted.
    _brick: tempfile::TempDir,
}

impl Gluster {
    pub fn start(name: &str) -> Gluster {
        glusterd();
        let volume = format!("{PREFIX}{name}-{}", std::process::id());
        let brick = tempfile::Builder::new().prefix("ballast-brick-").tempdir().unwrap();
        // force: the brick is on the root filesystem, which gluster
        // refuses otherwise.
        let at = format!("{}:{}/brick", hostname(), brick.path().display());
        gluster_ok(&["volume", "create", &volume, &at, "force"]);
        gluster_ok(&["volume", "start", &volume]);
        Gluster { volume, _brick: brick }
    }

    /// Mounts the volume inside `host`'s mount namespace only, at a
    /// directory of the host's; the host unmounts it when dropped. The
    /// directory is empty as seen from the test process: reach its files
    /// through `host.nsenter` or the host's containers and daemons.
    /// Declare the `Gluster` before its hosts, so that they are dropped
    /// (their volumes removed, their mounts undone) while it still serves.
    pub fn mount_in(&self, host: &Host) -> PathBuf {
        let dir = host.dir().join(format!("gluster-{}", self.volume));
        std::fs::create_dir_all(&dir).unwrap();
        let source = format!("{}:/{}", hostname(), self.volume);
        host.nsenter_ok(&["mount", "-t", "glusterfs", &source, dir.to_str().unwrap()]);
        host.note_mount(dir.clone());
        let ok = host.nsenter(&["mountpoint", "-q", dir.to_str().unwrap()]).status.success();
        assert!(ok, "{source} is not mounted at {} in {}", dir.display(), host.name);
        dir
    }
}

impl Drop for Gluster {
    fn drop(&mut self) {
        // Mounts that are still there lose their server now and answer
        // ENOTCONN until their host unmounts them.
        gluster(&["volume", "stop", &self.volume, "force"]);
        let out = gluster(&["volume", "delete", &self.volume]);
        if !out.status.success() {
            eprintln!(
                "deleting gluster volume {}: {}",
                self.volume,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
