//! The loop pool: image files with their own filesystem, attached and
//! mounted while a volume is active, with a hard size limit. Each test
//! checks that no mount and no loop device of its pool is left behind.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{
    Daemon, IMAGE, config_args, engine, root_or_skip, serve_must_fail, wait_until,
};

fn config(pool: &Path, extra: &str) -> String {
    format!(
        "{extra}[[pool]]\nname = \"quota\"\nbackend = \"loop\"\npath = \"{}\"\ndefault_size = \"64M\"\n",
        pool.display()
    )
}

/// Mounts below `dir`, from /proc/self/mountinfo: (mountpoint, fstype).
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let at = f[4].to_string();
            at.starts_with(dir.to_str().unwrap()).then(|| (at, f[sep + 1].to_string()))
        })
        .collect()
}

/// Loop devices whose backing file is below `dir`.
fn loops_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let backing = entry.path().join("loop/backing_file");
        if let Ok(file) = std::fs::read_to_string(&backing)
            && file.trim().starts_with(dir.to_str().unwrap())
        {
            found.push(entry.file_name().to_string_lossy().to_string());
        }
    }
    found
}

#[test]
fn loop_volumes_attach_on_mount_enforce_size_and_detach() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    let d = Daemon::private_with("loop-basic", &config(&pool, "trash_retention = \"0s\"\n"));
    d.call_ok("VolumeDriver.Create", r#"{"Name":"q","Opts":{"size":"32M","mode":"0750"}}"#);
    assert_eq!(d.get("q")["Status"]["sizeBytes"], 32 << 20);
    assert!(mounts_under(&pool).is_empty(), "inactive volumes are not mounted");
    assert!(loops_under(&pool).is_empty());

    let mp = d.call_ok("VolumeDriver.Mount", r#"{"Name":"q","ID":"a"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mounts_under(&pool), vec![(mp.clone(), "ext4".to_string())]);
    assert_eq!(loops_under(&pool).len(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&mp).unwrap().permissions().mode() & 0o7777, 0o750);
    assert_eq!(std::fs::read_dir(&mp).unwrap().count(), 0, "a new volume is empty (no lost+found)");

    // Past the size: ENOSPC.
    let mut f = std::fs::File::create(format!("{mp}/fill")).unwrap();
    let chunk = vec![1u8; 1 << 20];
    let mut written = 0;
    let err = loop {
        use std::io::Write;
        match f.write_all(&chunk).and_then(|()| f.sync_data()) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
        assert!(written <= 64 << 20, "wrote {written} bytes into a 32M volume");
    };
    drop(f);
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC, got {err}");
    std::fs::remove_file(format!("{mp}/fill")).unwrap();
    std::fs::write(format!("{mp}/keep"), b"snapshotted").unwrap();

    // A snapshot while mounted (frozen for the copy), then revert while detached.
    let s = d.admin_ok("POST", "/v1/volumes/q?action=snapshot", json!({ "name": "s1" }), 202);
    let sid = s["id"].as_str().unwrap().to_string();
    assert_eq!(d.settle(&format!("/v1/snapshots/{sid}"))["state"], "created");
    std::fs::write(format!("{mp}/keep"), b"changed").unwrap();
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"q","ID":"a"}"#);
    assert!(mounts_under(&pool).is_empty(), "the last unmount unmounts");
    wait_until("the loop device to detach", || loops_under(&pool).is_empty());

    d.admin_ok("POST", "/v1/volumes/q?action=reverttosnapshot", json!({ "snapshotId": sid }), 202);
    assert_eq!(d.settle("/v1/volumes/q")["transitioning"], "no");
    let mp = d.call_ok("VolumeDriver.Mount", r#"{"Name":"q","ID":"b"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(std::fs::read(format!("{mp}/keep")).unwrap(), b"snapshotted");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"q","ID":"b"}"#);

    // A clone from the snapshot is its own image.
    d.call_ok(
        "VolumeDriver.Create",
        &json!({ "Name": "c", "Opts": { "from-snapshot": sid } }).to_string(),
    );
    let cm = d.call_ok("VolumeDriver.Mount", r#"{"Name":"c","ID":"x"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(std::fs::read(format!("{cm}/keep")).unwrap(), b"snapshotted");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"c","ID":"x"}"#);

    // Purge (retention 0) removes the images.
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"q"}"#);
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"c"}"#);
    assert!(!pool.join("images/v1.img").exists());
    assert!(mounts_under(&pool).is_empty());
    wait_until("no loop device left", || loops_under(&pool).is_empty());
}

#[test]
fn xfs_images_and_capacity_limits() {
    if !root_or_skip() {
        return;
    }
    if std::process::Command::new("sh")
        .args(["-c", "command -v mkfs.xfs"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        crate::harness::skip("mkfs.xfs is not installed (apt-get install xfsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    let d = Daemon::private_with("loop-xfs", &config(&pool, "trash_retention = \"0s\"\n"));
    d.call_ok("VolumeDriver.Create", r#"{"Name":"x","Opts":{"fs":"xfs","size":"320M"}}"#);
    let mp = d.call_ok("VolumeDriver.Mount", r#"{"Name":"x","ID":"a"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mounts_under(&pool), vec![(mp, "xfs".to_string())]);
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"x","ID":"a"}"#);

    // More than the pool's filesystem can hold: refused with the numbers.
    let err = d.call_err("VolumeDriver.Create", r#"{"Name":"huge","Opts":{"size":"100P"}}"#);
    assert!(err.contains("cannot fit 100.0 PiB") && err.contains("capacity"), "{err}");
    let err = d.call_err("VolumeDriver.Create", r#"{"Name":"bad","Opts":{"fs":"zfs"}}"#);
    assert!(err.contains("option fs=\"zfs\" is invalid"), "{err}");
    assert_eq!(d.names(), vec!["x"]);
    let (status, body) = d.admin("GET", "/v1/storagepools/quota", Value::Null);
    assert_eq!((status, body["backend"].as_str()), (200, Some("loop")));
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"x"}"#);
    wait_until("no loop device left", || loops_under(&pool).is_empty());
}

#[test]
fn a_loop_pool_shows_what_its_images_reserve_against_what_overcommit_allows() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    let config = config(&pool, "trash_retention = \"0s\"\n") + "overcommit = 1.5\n";
    let d = Daemon::private_with("loop-reserved", &config);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"r1","Opts":{"size":"64M"}}"#);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"r2","Opts":{"size":"32M"}}"#);

    let (status, p) = d.admin("GET", "/v1/storagepools/quota", Value::Null);
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["reservedBytes"], 96 << 20, "{p}");
    let capacity = p["capacityBytes"].as_u64().unwrap();
    assert!(capacity > 0, "{p}");
    assert_eq!(p["allowedBytes"], capacity + capacity / 2, "{p}");
    // Sparse images take almost nothing of the disk: the disk's numbers
    // alone would call the pool empty.
    let (_, default) = d.admin("GET", "/v1/storagepools/default", Value::Null);
    assert!(default["reservedBytes"].is_null(), "{default}");

    d.call_ok("VolumeDriver.Remove", r#"{"Name":"r2"}"#);
    let (_, p) = d.admin("GET", "/v1/storagepools/quota", Value::Null);
    assert_eq!(p["reservedBytes"], 64 << 20, "a removed volume reserves nothing: {p}");
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"r1"}"#);
    wait_until("no loop device left", || loops_under(&pool).is_empty());
}

#[test]
fn kill9_with_a_loop_volume_in_a_running_container() {
    let Some(e) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    let mut d = Daemon::for_docker_with("ballast-e2e-loop", e, Some(&config(&pool, "")));
    e.ok(&["volume", "create", "--driver", &d.driver, "-o", "size=32M", "loop-capped"]);
    let err = crate::docker::write_past_the_size(e, "loop-capped");
    assert!(err.contains("No space left on device"), "{err}");

    let c = e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        &format!("ballast-test={}", d.driver),
        "-v",
        "loop-capped:/data",
        IMAGE,
        "sh",
        "-c",
        "echo before > /data/f; sleep 300",
    ]);
    wait_until("the container's write", || {
        e.docker(&["exec", &c, "cat", "/data/f"]).status.success()
    });
    d.kill9();
    d.start_again();
    e.ok(&["exec", &c, "sh", "-c", "echo after >> /data/f"]);
    assert_eq!(e.ok(&["exec", &c, "cat", "/data/f"]), "before\nafter");
    assert_eq!(e.inspect("loop-capped")["Status"]["mounts"], 1);
    e.ok(&["rm", "-f", &c]);
    wait_until("the unmount", || d.get("loop-capped")["Status"]["state"] == "inactive");
    assert!(mounts_under(&pool).is_empty(), "detached after the container exits");
    wait_until("the loop device to detach", || loops_under(&pool).is_empty());
    e.ok(&["volume", "rm", "loop-capped"]);
    crate::docker::snapshot_revert_clone_in_containers(e, &d, "quota");
    wait_until("no loop device left", || loops_under(&pool).is_empty());
}

#[test]
fn snapshots_of_loop_images_share_blocks_on_a_reflink_host() {
    if !root_or_skip() {
        return;
    }
    let Some(host) = crate::harness::ScratchFs::xfs(1024) else { return };
    let pool = host.mnt.join("pool");
    let d = Daemon::private_with("loop-reflink", &config(&pool, ""));
    d.call_ok("VolumeDriver.Create", r#"{"Name":"r","Opts":{"size":"256M"}}"#);
    let mp = d.call_ok("VolumeDriver.Mount", r#"{"Name":"r","ID":"a"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(format!("{mp}/data"), vec![3u8; 128 << 20]).unwrap();
    let free = || {
        let st = rustix::fs::statvfs(&host.mnt).unwrap();
        st.f_bavail * st.f_frsize
    };
    rustix::fs::sync();
    let before = free();
    let s = d.admin_ok("POST", "/v1/volumes/r?action=snapshot", Value::Null, 202);
    let sid = s["id"].as_str().unwrap().to_string();
    assert_eq!(d.settle(&format!("/v1/snapshots/{sid}"))["state"], "created");
    rustix::fs::sync();
    let used = before.saturating_sub(free());
    assert!(used < 16 << 20, "a snapshot of a 128 MiB volume took {used} bytes: not a reflink");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"r","ID":"a"}"#);
    wait_until("no loop device left", || loops_under(&pool).is_empty());
}

#[test]
fn stray_loop_devices_of_the_pool_are_detached_at_start() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    let mut d = Daemon::private_with("loop-stray", &config(&pool, ""));
    d.call_ok("VolumeDriver.Create", r#"{"Name":"s","Opts":{"size":"16M"}}"#);
    assert!(d.terminate());
    // Attached by hand, without autoclear, and not mounted.
    let out = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(pool.join("images/v1.img"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(loops_under(&pool).len(), 1);
    d.start_again();
    assert!(loops_under(&pool).is_empty(), "the stray device is detached");
    assert!(d.log().contains("detached a stray loop device"), "{}", d.log());
    // The volume itself is untouched and still mounts.
    d.call_ok("VolumeDriver.Mount", r#"{"Name":"s","ID":"a"}"#);
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"s","ID":"a"}"#);
    wait_until("no loop device left", || loops_under(&pool).is_empty());
}

#[test]
fn a_loop_pool_without_its_mkfs_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let args = config_args(dir.path(), "c.toml", &config(&dir.path().join("pool"), ""));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let err = serve_must_fail(dir.path(), &args, &[("PATH", &dir.path().join("no-tools"))]);
    assert!(err.contains("pool \"quota\"") && err.contains("mkfs.ext4 is not installed"), "{err}");
    assert!(!dir.path().join("pool").exists(), "no pool directory made");
}

#[test]
fn start_up_reattaches_active_volumes_and_detaches_inactive_ones() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool");
    let mut d = Daemon::private_with("loop-reconcile", &config(&pool, ""));
    d.call_ok("VolumeDriver.Create", r#"{"Name":"held","Opts":{"size":"16M"}}"#);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"idle","Opts":{"size":"16M"}}"#);
    let held = d.call_ok("VolumeDriver.Mount", r#"{"Name":"held","ID":"c"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(format!("{held}/f"), b"kept").unwrap();
    d.kill9();
    // As after a host restart: the held volume's mount is gone; and the
    // idle one is mounted although the store says inactive.
    assert!(std::process::Command::new("umount").arg(&held).status().unwrap().success());
    let idle_img = pool.join("images/v2.img");
    let idle_mp = pool.join("mounts/v2");
    std::fs::create_dir_all(&idle_mp).unwrap();
    assert!(
        std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&idle_img)
            .arg(&idle_mp)
            .status()
            .unwrap()
            .success()
    );
    d.start_again();
    let mounted: Vec<String> = mounts_under(&pool).into_iter().map(|(m, _)| m).collect();
    assert_eq!(mounted, vec![held.clone()], "held is mounted again, idle is not");
    assert_eq!(std::fs::read(format!("{held}/f")).unwrap(), b"kept");
    assert_eq!(d.get("held")["Status"]["mounts"], 1);
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"held","ID":"c"}"#);
    wait_until("no loop device left", || loops_under(&pool).is_empty());
}
