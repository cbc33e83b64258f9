//! A pool whose filesystem fills up: snapshots, fills and creates fail
//! with a clear error, what was stored stays intact, nothing half-made is
//! left or mountable, and the daemon keeps serving.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Daemon, Tmpfs, root_or_skip, wait_until};

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |e| e.count())
}

#[test]
fn a_full_pool_fails_cleanly_and_keeps_serving() {
    if !root_or_skip() {
        return;
    }
    let disk = tempfile::tempdir().unwrap();
    let fs = Tmpfs::new(disk.path(), 24);
    let pool = fs.0.join("pool");
    let config = format!(
        "trash_retention = \"0s\"\n[[pool]]\nname = \"tiny\"\nbackend = \"dir\"\npath = \"{}\"\n",
        pool.display()
    );
    let d = Daemon::private_with("diskfull", &config);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db"}"#);
    let mp = d.call_ok("VolumeDriver.Mount", r#"{"Name":"db","ID":"c"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    // A container fills the disk: two thirds in one file, then whatever
    // else fits, until the kernel says no.
    std::fs::write(format!("{mp}/big"), vec![1u8; 16 << 20]).unwrap();
    let mut spill = 0;
    while std::fs::write(format!("{mp}/spill{spill}"), vec![2u8; 1 << 20]).is_ok() {
        spill += 1;
    }
    let id = d.id_of("db");

    // A snapshot cannot fit: it ends in error, saying so, and leaves nothing.
    let s = d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=snapshot"),
        json!({ "name": "nofit" }),
        202,
    );
    let s = d.settle(&format!("/v1/snapshots/{}", s["id"].as_str().unwrap()));
    assert_eq!(s["state"], "error", "{s}");
    assert!(s["transitioningMessage"].as_str().unwrap().contains("No space left"), "{s}");
    assert_eq!(entries(&pool.join("snapshots")), 0);
    wait_until("staging to be empty", || entries(&pool.join("staging")) == 0);

    // A copy cannot fit: the clone fails, says why and never mounts.
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"db","ID":"c"}"#);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"clone","Opts":{"from-volume":"db"}}"#);
    let v = d.settle("/v1/volumes/clone");
    assert_eq!(v["transitioning"], "error", "{v}");
    let err = d.call_err("VolumeDriver.Mount", r#"{"Name":"clone","ID":"c"}"#);
    assert!(err.contains("never filled completely"), "{err}");
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"clone"}"#);

    // What was stored is intact, and the daemon still answers everything.
    assert_eq!(std::fs::read(format!("{mp}/big")).unwrap(), vec![1u8; 16 << 20]);
    assert_eq!(d.names(), ["db"]);
    d.call_ok("VolumeDriver.Mount", r#"{"Name":"db","ID":"c2"}"#);
    std::fs::remove_file(format!("{mp}/big")).unwrap();
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"db","ID":"c2"}"#);
    // With room again, the same snapshot works.
    let fits = d.snapshot(&id, "fits");
    eprintln!("disk full: {spill} MiB spilled after 16 MiB; snapshot and clone refused, then fine");
    d.admin_ok("DELETE", &format!("/v1/snapshots/{fits}"), Value::Null, 200);
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"db"}"#);
    drop(d);
    drop(fs);
}
