//! The btrfs pool on a real btrfs filesystem made by the test: subvolumes,
//! O(1) read-only snapshots, clones, revert, and sizes enforced by quota
//! groups.

use std::io::Write;

use serde_json::{Value, json};

use crate::harness::{
    Daemon, ScratchFs, config_args, engine, root_or_skip, serve_must_fail, wait_until,
};

fn config(fs: &ScratchFs, extra: &str) -> String {
    format!(
        "{extra}[[pool]]\nname = \"fast\"\nbackend = \"btrfs\"\npath = \"{}\"\n",
        fs.mnt.join("ballast").display()
    )
}

/// Writes up to `bytes` into `path`; returns how many went in and the
/// error that stopped it, if any.
fn write_up_to(path: &str, bytes: usize) -> (usize, Option<std::io::Error>) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut done = 0;
    while done < bytes {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_data()) {
            return (done, Some(e));
        }
        done += chunk.len();
    }
    (done, None)
}

/// Creates a volume and waits until it is filled (clones fill in a job).
fn create(d: &Daemon, name: &str, opts: Value) -> String {
    d.call_ok("VolumeDriver.Create", &json!({ "Name": name, "Opts": opts }).to_string());
    assert_eq!(d.settle(&format!("/v1/volumes/{name}"))["transitioning"], "no");
    d.get(name)["Mountpoint"].as_str().unwrap().to_string()
}

#[test]
fn snapshots_clones_and_revert_on_btrfs() {
    if !root_or_skip() {
        return;
    }
    let Some(fs) = ScratchFs::btrfs(512) else { return };
    let d = Daemon::private_with("btrfs-snap", &config(&fs, ""));
    let mp = create(&d, "data", json!({ "pool": "fast", "size": "32M" }));
    std::fs::write(format!("{mp}/f"), b"v1").unwrap();
    let s = d.admin_ok("POST", "/v1/volumes/data?action=snapshot", json!({ "name": "first" }), 202);
    let sid = s["id"].as_str().unwrap().to_string();
    let s = d.settle(&format!("/v1/snapshots/{sid}"));
    assert_eq!(s["state"], "created", "{s}");
    // A read-only snapshot subvolume.
    let snap_dir = fs.mnt.join("ballast/snapshots").join(format!("s{}", &sid[2..]));
    assert_eq!(std::fs::read(snap_dir.join("f")).unwrap(), b"v1");
    let err = std::fs::write(snap_dir.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");

    std::fs::write(format!("{mp}/f"), b"v2").unwrap();
    d.admin_ok(
        "POST",
        "/v1/volumes/data?action=reverttosnapshot",
        json!({ "snapshotId": sid }),
        202,
    );
    assert_eq!(d.settle("/v1/volumes/data")["transitioning"], "no");
    assert_eq!(std::fs::read(format!("{mp}/f")).unwrap(), b"v1");

    // Clones: from the snapshot and from the volume, independent of both.
    let a = create(&d, "from-snap", json!({ "from-snapshot": "first" }));
    let b = create(&d, "from-vol", json!({ "from-volume": "data" }));
    for clone in [&a, &b] {
        assert_eq!(std::fs::read(format!("{clone}/f")).unwrap(), b"v1");
        std::fs::write(format!("{clone}/f"), b"changed").unwrap();
    }
    assert_eq!(std::fs::read(format!("{mp}/f")).unwrap(), b"v1");
    assert_eq!(d.get("from-snap")["Status"]["pool"], "fast", "a clone lands beside its source");
    // A clone without `size` has no limit, although its source has one.
    let (written, err) = write_up_to(&format!("{a}/big"), 48 << 20);
    assert_eq!((written, err.map(|e| e.to_string())), (48 << 20, None));

    // The revert carried the limit over to the new subvolume.
    let (written, err) = write_up_to(&format!("{mp}/big"), 64 << 20);
    assert!(err.is_some() && written < 40 << 20, "wrote {written} bytes past a 32M limit");
}

#[test]
fn sizes_are_enforced_and_used_bytes_come_from_quota_groups() {
    if !root_or_skip() {
        return;
    }
    let Some(fs) = ScratchFs::btrfs(512) else { return };
    let d = Daemon::private_with("btrfs-size", &config(&fs, "trash_retention = \"0s\"\n"));
    let mp = create(&d, "btrfs-capped", json!({ "pool": "fast", "size": "32M" }));
    assert_eq!(d.get("btrfs-capped")["Status"]["sizeBytes"], 32 << 20);
    d.call_ok("VolumeDriver.Mount", r#"{"Name":"btrfs-capped","ID":"c"}"#);
    let (written, err) = write_up_to(&format!("{mp}/fill"), 64 << 20);
    let err = err.expect("writing past the size fails");
    assert_eq!(err.raw_os_error(), Some(122), "EDQUOT, got {err}");
    assert!((16 << 20..34 << 20).contains(&written), "wrote {written}");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"btrfs-capped","ID":"c"}"#);
    // Measured after the Unmount has answered, in the background.
    let used = || d.get("btrfs-capped")["Status"]["usedBytes"].as_u64().unwrap();
    wait_until("usedBytes measured after the Unmount", || used() >= written as u64);
    assert!(used() <= 33 << 20, "usedBytes {} after writing {written}", used());

    // Purge deletes the subvolume.
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"btrfs-capped"}"#);
    assert!(!std::path::Path::new(&mp).exists());
    let list = std::process::Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(&fs.mnt)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains("volumes/"), "{list:?}");
}

#[test]
fn a_btrfs_pool_elsewhere_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("notbtrfs");
    let text =
        format!("[[pool]]\nname = \"fast\"\nbackend = \"btrfs\"\npath = \"{}\"\n", pool.display());
    let args = config_args(dir.path(), "c.toml", &text);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let err = serve_must_fail(dir.path(), &args, &[]);
    assert!(err.contains("pool \"fast\"") && err.contains("is not on a btrfs filesystem"), "{err}");
    assert!(!pool.exists(), "nothing created");
}

#[test]
fn a_container_cannot_write_past_the_size_on_btrfs() {
    let Some(e) = engine() else { return };
    let Some(fs) = ScratchFs::btrfs(512) else { return };
    let d = Daemon::for_docker_with("ballast-e2e-btrfs", e, Some(&config(&fs, "")));
    e.ok(&[
        "volume",
        "create",
        "--driver",
        &d.driver,
        "-o",
        "pool=fast",
        "-o",
        "size=32M",
        "btrfs-capped",
    ]);
    let err = crate::docker::write_past_the_size(e, "btrfs-capped");
    assert!(err.contains("quota") || err.contains("space"), "{err}");
    e.ok(&["volume", "rm", "btrfs-capped"]);
    crate::docker::snapshot_revert_clone_in_containers(e, &d, "fast");
}
