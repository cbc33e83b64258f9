//! `serve --mount-root DIR`: Docker is handed `DIR/<volume id>`, a bind
//! of the volume that lives exactly as long as its mounts, and that a
//! daemon killed with SIGKILL finds, or makes again, before its sockets
//! answer.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::harness::{Daemon, root_or_skip};

/// How many mounts sit on `path`, from the mount table.
pub fn mounts_at(path: &Path) -> usize {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table.lines().filter(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap())).count()
}

/// Takes every mount off `path` (what a plugin disabled and enabled
/// finds: an empty propagated mount).
pub fn detach(path: &Path) {
    while mounts_at(path) > 0 {
        rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH).unwrap();
    }
}

/// Detaches whatever is left mounted in a mount root when a test ends,
/// passed or not, so that no bind outlives it.
pub struct Binds(pub PathBuf);

impl Drop for Binds {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            detach(&entry.path());
        }
    }
}

fn mount(d: &Daemon, name: &str, id: &str) -> String {
    let v = d.call_ok("VolumeDriver.Mount", &json!({ "Name": name, "ID": id }).to_string());
    v["Mountpoint"].as_str().unwrap().to_string()
}

fn unmount(d: &Daemon, name: &str, id: &str) {
    d.call_ok("VolumeDriver.Unmount", &json!({ "Name": name, "ID": id }).to_string());
}

#[test]
fn mounted_volumes_are_handed_to_docker_as_binds_that_survive_a_kill() {
    if !root_or_skip() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("mounts");
    let _binds = Binds(root.clone());
    let mut d = Daemon::private_with_args("exposed", "", &["--mount-root", root.to_str().unwrap()]);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"web"}"#);
    let id = d.id_of("web");
    let real = d.state_dir().join("pools/default/volumes").join(id.replacen("1v", "v", 1));
    std::fs::write(real.join("index.html"), b"hello").unwrap();
    let exposed = root.join(&id);

    // The first Mount makes the bind; every answer to Docker names it.
    assert_eq!(mount(&d, "web", "c1"), exposed.to_str().unwrap());
    assert_eq!(mounts_at(&exposed), 1);
    assert_eq!(std::fs::read(exposed.join("index.html")).unwrap(), b"hello");
    std::fs::write(exposed.join("written"), b"through the bind").unwrap();
    assert_eq!(std::fs::read(real.join("written")).unwrap(), b"through the bind");
    let path = d.call_ok("VolumeDriver.Path", r#"{"Name":"web"}"#);
    assert_eq!(path["Mountpoint"], exposed.to_str().unwrap());
    assert_eq!(d.get("web")["Mountpoint"], exposed.to_str().unwrap());
    let list = d.call_ok("VolumeDriver.List", "");
    assert_eq!(list["Volumes"][0]["Mountpoint"], exposed.to_str().unwrap());

    // A second mount ID reuses it; only the last Unmount takes it off.
    assert_eq!(mount(&d, "web", "c2"), exposed.to_str().unwrap());
    assert_eq!(mounts_at(&exposed), 1, "one bind, not two");
    unmount(&d, "web", "c1");
    assert_eq!(mounts_at(&exposed), 1);
    unmount(&d, "web", "c2");
    assert_eq!(mounts_at(&exposed), 0);
    assert!(!exposed.exists(), "the entry goes with the bind");

    // Revert swaps the volume's directory: refused while a bind of it is
    // handed out, as for any mounted volume.
    let snap = d.snapshot(&id, "s");
    std::fs::write(real.join("index.html"), b"changed").unwrap();
    mount(&d, "web", "c3");
    let revert = format!("/v1/volumes/{id}?action=reverttosnapshot");
    let (status, v) = d.admin("POST", &revert, json!({ "snapshotId": snap }));
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("c3"), "{v}");

    // SIGKILL: the bind stays, and the restarted daemon keeps it as it is.
    d.kill9();
    assert_eq!(mounts_at(&exposed), 1);
    d.start_again();
    assert_eq!(mounts_at(&exposed), 1, "kept, not stacked");
    assert_eq!(std::fs::read(exposed.join("index.html")).unwrap(), b"changed");

    // SIGKILL, and the binds are gone meanwhile (a plugin disabled and
    // enabled gets an empty propagated mount); a bind for a volume
    // without mounts is there instead (a crash between a bind and its
    // record). Both are set right before the sockets answer.
    d.call_ok("VolumeDriver.Create", r#"{"Name":"idle"}"#);
    let idle = d.id_of("idle");
    d.kill9();
    detach(&exposed);
    std::fs::remove_dir(&exposed).unwrap();
    let stale = root.join(&idle);
    std::fs::create_dir(&stale).unwrap();
    rustix::mount::mount_bind(&real, &stale).unwrap();
    d.start_again();
    assert_eq!(mounts_at(&exposed), 1, "{}", d.log());
    assert_eq!(std::fs::read(exposed.join("index.html")).unwrap(), b"changed");
    assert_eq!(mounts_at(&stale), 0);
    assert!(!stale.exists());
    assert_eq!(d.get("web")["Status"]["mounts"], 1);

    // The next Unmount finds what it expects; then revert works, and the
    // next bind shows the reverted directory.
    unmount(&d, "web", "c3");
    assert!(!exposed.exists());
    d.admin_ok("POST", &revert, json!({ "snapshotId": snap }), 202);
    d.settle(&format!("/v1/volumes/{id}"));
    mount(&d, "web", "c4");
    assert_eq!(std::fs::read(exposed.join("index.html")).unwrap(), b"hello");
    unmount(&d, "web", "c4");
    assert!(!exposed.exists());
}

#[test]
fn a_mount_root_holding_a_state_directory_is_refused() {
    if !root_or_skip() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("mounts");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("ballast.db"), b"").unwrap();
    let err = crate::harness::serve_must_fail(
        top.path(),
        &["--mount-root".as_ref(), root.as_os_str()],
        &[],
    );
    assert!(err.contains("holds a state directory"), "{err}");
}

#[test]
fn a_read_only_access_mode_is_handed_out_as_a_read_only_bind_and_needs_a_mount_root() {
    if !root_or_skip() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("mounts");
    let _binds = Binds(root.clone());
    let d = Daemon::private_with_args("exposed-ro", "", &["--mount-root", root.to_str().unwrap()]);
    let create = |name: &str, mode: &str| {
        let body = json!({ "Name": name, "Opts": { "access-mode": mode } }).to_string();
        d.call_ok("VolumeDriver.Create", &body);
    };
    create("ro-shelf", "singleHostRO");
    create("rw-desk", "singleHostRW");
    let shelf = mount(&d, "ro-shelf", "m1");
    let desk = mount(&d, "rw-desk", "m2");
    let err = std::fs::write(Path::new(&shelf).join("note"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::ROFS.raw_os_error()), "{err}");
    std::fs::write(Path::new(&desk).join("note"), b"x").unwrap();
    let inspected = d.admin_ok("GET", "/v1/volumes/ro-shelf", json!(null), 200);
    assert_eq!(inspected["accessMode"], "singleHostRO");
    unmount(&d, "ro-shelf", "m1");
    unmount(&d, "rw-desk", "m2");

    // Without a mount root there is no bind to make read-only: refused.
    let plain = Daemon::private("exposed-ro-plain");
    let err = plain.call_err(
        "VolumeDriver.Create",
        &json!({ "Name": "ro-nowhere", "Opts": { "access-mode": "multiHostRO" } }).to_string(),
    );
    assert!(err.contains("--mount-root"), "{err}");
    assert!(plain.names().is_empty());
}
