//! Storage pools under stress: a pool short of space purges its oldest
//! trash, a pool whose disk is not mounted is unavailable but kept, and
//! unknown entries in a pool are reported and left alone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Daemon, root_or_skip};

/// A small tmpfs, unmounted on drop (after the daemon using it is gone).
struct SmallFs(std::path::PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_pool_short_of_space_purges_its_oldest_trash_first() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a tmpfs");
    let _fs = SmallFs(small.clone());
    let config = format!(
        "trash_retention = \"1h\"\n[[pool]]\nname = \"small\"\nbackend = \"dir\"\npath = \"{}\"\n",
        small.join("pool").display()
    );
    let d = Daemon::private_with("admin-lowspace", &config);
    let fill = |name: &str, bytes: usize| {
        d.call_ok(
            "VolumeDriver.Create",
            &json!({ "Name": name, "Opts": { "pool": "small" } }).to_string(),
        );
        let mp = d.get(name)["Mountpoint"].as_str().unwrap().to_string();
        std::fs::write(format!("{mp}/data"), vec![1u8; bytes]).unwrap();
        mp
    };
    let old = fill("old", 14 << 20);
    let young = fill("young", 1 << 20);
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"old"}"#);
    std::thread::sleep(Duration::from_millis(20));
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"young"}"#);
    // Under 10% free: the oldest removed volume goes, long before its hour.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&old).exists() {
        assert!(Instant::now() < deadline, "the oldest removed volume was not purged");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        std::path::Path::new(&format!("{young}/data")).exists(),
        "enough space again: the younger one stays"
    );
    let trash = d.admin_ok("GET", "/v1/volumes?state=removed", Value::Null, 200);
    let names: Vec<_> =
        trash["data"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["young"]);
    assert!(d.log().contains("under 10% free"), "the early purge is logged");
}

/// A bind mount standing in for a disk, unmounted on drop.
struct BindMount(std::path::PathBuf);

impl BindMount {
    fn new(from: &std::path::Path, to: &std::path::Path) -> BindMount {
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success();
        assert!(ok, "bind mount");
        BindMount(to.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_pool_whose_disk_is_not_mounted_is_unavailable_not_forgotten() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (disk, mnt) = (dir.path().join("disk"), dir.path().join("mnt"));
    std::fs::create_dir(&disk).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    let config = format!(
        "[[pool]]\nname = \"ext\"\nbackend = \"dir\"\npath = \"{}\"\n",
        mnt.join("pool").display()
    );
    let mut d = Daemon::private_with("admin-unmounted", &config);
    let mounted = BindMount::new(&disk, &mnt);
    // The daemon started before the disk: it made its pool on the root
    // filesystem. Restart it on the real disk for a clean start.
    d.restart();
    d.call_ok("VolumeDriver.Create", r#"{"Name":"kept"}"#);
    let mp = d.get("kept")["Mountpoint"].as_str().unwrap().to_string();
    std::fs::write(format!("{mp}/f"), b"on the disk").unwrap();
    assert!(d.terminate());
    drop(mounted);
    std::fs::remove_dir_all(mnt.join("pool")).unwrap(); // what the first start left on the root fs

    // Without its disk: the daemon starts, Get answers, Mount explains.
    d.start_again();
    let v = d.get("kept");
    assert_eq!(v["Status"]["state"], "inactive");
    let err = d.call_err("VolumeDriver.Mount", r#"{"Name":"kept","ID":"c"}"#);
    assert!(err.contains("unavailable") && err.contains("mounted"), "{err}");
    let pools = d.admin_ok("GET", "/v1/storagepools/ext", Value::Null, 200);
    assert_eq!(pools["state"], "unavailable");
    assert!(!mnt.join("pool").exists(), "nothing was created where the disk belongs");

    // The disk comes back: the pool follows within a janitor pass.
    let _mounted = BindMount::new(&disk, &mnt);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mp = loop {
        let (status, body) = d.call("VolumeDriver.Mount", r#"{"Name":"kept","ID":"c"}"#);
        if status == 200 {
            break body["Mountpoint"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the pool never came back: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(std::fs::read(format!("{mp}/f")).unwrap(), b"on the disk");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"kept","ID":"c"}"#);
    assert!(d.terminate());
}

#[test]
fn unknown_entries_in_a_pool_are_reported_and_left_alone() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private("admin-stranger");
    assert!(d.terminate());
    let stranger = d.state_dir().join("pools/default/volumes/stranger");
    std::fs::create_dir(&stranger).unwrap();
    std::fs::write(stranger.join("precious"), b"x").unwrap();
    d.start_again();
    assert!(d.log().contains("unknown entry in the pool's volumes; left in place"), "{}", d.log());
    assert!(d.log().contains("stranger"));
    assert!(stranger.join("precious").exists());
}
