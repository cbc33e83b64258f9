//! The hostile-input catalogue: what a stranger can send to either socket
//! or plant inside a volume. Every case is answered with a clear error
//! (or, where Docker's protocol wants it, a harmless success) and changes
//! nothing outside its volume; the daemon keeps serving. Each test prints
//! how many cases it ran.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, Mode, OFlags};
use serde_json::{Value, json};

use crate::harness::{Daemon, root_or_skip};

/// Entries below the default pool's volumes directory.
fn pool_entries(d: &Daemon) -> usize {
    std::fs::read_dir(d.state_dir().join("pools/default/volumes")).map_or(0, |e| e.count())
}

#[test]
fn plugin_protocol_catalogue() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("hostile-plugin");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"src"}"#);
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let many_opts: serde_json::Map<String, Value> =
        (0..5_000).map(|i| (format!("k{i}"), Value::from("v"))).collect();
    // (method, body, what the error must say)
    let cases: Vec<(&str, String, &str)> = vec![
        // Names
        ("Create", json!({ "Name": "" }).to_string(), "invalid volume name"),
        ("Create", json!({ "Name": "../../etc" }).to_string(), "invalid volume name"),
        ("Create", json!({ "Name": "a/b" }).to_string(), "invalid volume name"),
        ("Create", json!({ "Name": "é" }).to_string(), "invalid volume name"),
        ("Create", json!({ "Name": "a\nb" }).to_string(), "invalid volume name"),
        ("Create", json!({ "Name": "x".repeat(100_000) }).to_string(), "invalid volume name"),
        ("Create", json!({ "Name": "1v1" }).to_string(), "reads as a resource id"),
        ("Create", json!({ "Name": "1s12" }).to_string(), "reads as a resource id"),
        ("Mount", json!({ "Name": "-x", "ID": "a" }).to_string(), "invalid volume name"),
        // Options
        ("Create", json!({ "Name": "o", "Opts": { "uid": "+1" } }).to_string(), "option uid="),
        (
            "Create",
            json!({ "Name": "o", "Opts": { "uid": "4294967295" } }).to_string(),
            "option uid=",
        ),
        ("Create", json!({ "Name": "o", "Opts": { "uid": "-1" } }).to_string(), "option uid="),
        ("Create", json!({ "Name": "o", "Opts": { "gid": "+5" } }).to_string(), "option gid="),
        ("Create", json!({ "Name": "o", "Opts": { "mode": "+755" } }).to_string(), "option mode="),
        ("Create", json!({ "Name": "o", "Opts": { "mode": "17777" } }).to_string(), "option mode="),
        ("Create", json!({ "Name": "o", "Opts": { "size": "0" } }).to_string(), "option size="),
        ("Create", json!({ "Name": "o", "Opts": { "size": "-1G" } }).to_string(), "option size="),
        (
            "Create",
            json!({ "Name": "o", "Opts": { "size": "99999999999P" } }).to_string(),
            "too large",
        ),
        ("Create", json!({ "Name": "o", "Opts": { "size": "1.5G" } }).to_string(), "option size="),
        ("Create", json!({ "Name": "o", "Opts": { "fs": "zfs" } }).to_string(), "option fs="),
        ("Create", json!({ "Name": "o", "Opts": { "pool": "" } }).to_string(), "option pool="),
        ("Create", json!({ "Name": "o", "Opts": { "pool": "../x" } }).to_string(), "no such pool"),
        ("Create", json!({ "Name": "o", "Opts": { "path": "etc" } }).to_string(), "absolute path"),
        (
            "Create",
            json!({ "Name": "o", "Opts": { "path": "/etc" } }).to_string(),
            "host_path_roots",
        ),
        (
            "Create",
            json!({ "Name": "o", "Opts": { "from-volume": "" } }).to_string(),
            "must not be empty",
        ),
        (
            "Create",
            json!({ "Name": "o", "Opts": { "from-volume": "../src" } }).to_string(),
            "no volume",
        ),
        (
            "Create",
            json!({ "Name": "o", "Opts": { "from-snapshot": "1s-1" } }).to_string(),
            "no snapshot",
        ),
        ("Create", json!({ "Name": "o", "Opts": many_opts }).to_string(), "unknown option"),
        (
            "Create",
            json!({ "Name": "src", "Opts": { "mode": "0700" } }).to_string(),
            "different options",
        ),
        // JSON and types
        ("Create", "{".to_string(), "malformed request body"),
        ("Create", "\u{0}".to_string(), "malformed request body"),
        ("Create", "[]".to_string(), "invalid volume name"),
        ("Create", json!({ "Name": ["a"] }).to_string(), "malformed request body"),
        ("Create", json!({ "Name": "o", "Opts": "size=1G" }).to_string(), "malformed request body"),
        (
            "Create",
            json!({ "Name": "o", "Opts": { "size": 1 } }).to_string(),
            "malformed request body",
        ),
        ("Create", deep_json.clone(), "malformed request body"),
        (
            "Create",
            String::from_utf8_lossy(b"{\"Name\":\"\xff\xfe\"}").into_owned(),
            "invalid volume name",
        ),
        // Protocol sequences
        ("Mount", json!({ "Name": "ghost", "ID": "a" }).to_string(), "no volume named"),
        ("Path", json!({ "Name": "ghost" }).to_string(), "no volume named"),
        ("Get", json!({ "Name": "ghost" }).to_string(), "no volume named"),
        ("Nonsense", json!({ "Name": "src" }).to_string(), "unknown"),
    ];
    let mut refused = 0;
    for (method, body, needle) in &cases {
        let err = d.call_err(&format!("VolumeDriver.{method}"), body);
        assert!(err.contains(needle), "{method} {}: {err}", &body[..body.len().min(80)]);
        refused += 1;
    }
    // What Docker repeats after failures and restarts must succeed and do
    // nothing.
    let harmless = [
        ("Unmount", json!({ "Name": "ghost", "ID": "a" })),
        ("Unmount", json!({ "Name": "src", "ID": "never" })),
        ("Remove", json!({ "Name": "ghost" })),
        ("Create", json!({ "Name": "src", "Opts": null })),
        ("Create", json!({ "Name": "src", "Opts": {} })),
    ];
    for (method, body) in &harmless {
        d.call_ok(&format!("VolumeDriver.{method}"), &body.to_string());
    }
    eprintln!("plugin catalogue: {refused} refused, {} harmless repeats", harmless.len());
    assert_eq!(d.names(), ["src"], "nothing else was created");
    assert_eq!(pool_entries(&d), 1, "no storage was made");
    assert_eq!(d.get("src")["Status"]["mounts"], 0, "{}", d.get("src"));
}

#[test]
fn admin_catalogue() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("hostile-admin");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"keep"}"#);
    let before = d.admin_ok("GET", "/v1/volumes/keep", Value::Null, 200);
    let id = before["id"].as_str().unwrap().to_string();
    let cases: Vec<(&str, String, Value)> = vec![
        ("POST", "/v1/volumes".into(), json!({ "name": "1v99" })),
        ("POST", "/v1/volumes".into(), json!({ "name": 7 })),
        ("POST", "/v1/volumes".into(), json!({ "name": "x", "driverOpts": { "uid": "+0" } })),
        ("POST", "/v1/volumes".into(), json!({ "name": "x", "driverOpts": { "nope": "1" } })),
        (
            "POST",
            "/v1/volumes".into(),
            json!({ "name": "x", "driverOpts": { "from-volume": "x" } }),
        ),
        ("POST", "/v1/volumes".into(), json!([1, 2, 3])),
        ("POST", format!("/v1/volumes/{id}?action=explode"), json!({})),
        (
            "POST",
            format!("/v1/volumes/{id}?action=reverttosnapshot"),
            json!({ "snapshotId": "1s999999" }),
        ),
        ("POST", format!("/v1/volumes/{id}?action=restore"), json!({ "name": "../x" })),
        ("POST", format!("/v1/volumes/{id}?action=snapshot"), json!({ "name": "1s5" })),
        ("POST", format!("/v1/volumes/{id}?action=deallocate"), json!({})),
        ("POST", format!("/v1/volumes/{id}?action=purge"), json!({})),
        ("PUT", format!("/v1/volumes/{id}"), json!({ "description": 5 })),
        ("GET", "/v1/volumes/1v99999999999999999999999".into(), Value::Null),
        ("GET", "/v1/volumes/..%2F..%2Fetc".into(), Value::Null),
        ("GET", "/v1/volumes?bogus_field=1".into(), Value::Null),
        ("DELETE", "/v1/snapshots/1s-1".into(), Value::Null),
    ];
    for (verb, path, body) in &cases {
        let (status, v) = d.admin(verb, path, body.clone());
        assert!((400..500).contains(&status), "{verb} {path}: {status} {v}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{verb} {path}: {v}");
    }
    eprintln!("admin catalogue: {} refused", cases.len());
    let after = d.admin_ok("GET", "/v1/volumes/keep", Value::Null, 200);
    assert_eq!(before, after, "the volume is unchanged");
    assert_eq!(d.names(), ["keep"]);
}

/// Makes a directory chain `depth` levels deep below `top` by descriptor
/// (its path is far longer than PATH_MAX), with a file at the bottom.
fn deep_tree(top: &std::path::Path, depth: usize) {
    let mut fd: OwnedFd =
        rfs::open(top, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..depth {
        rfs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = rfs::openat(&fd, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    }
    let f = rfs::openat(&fd, "bottom", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o644))
        .unwrap();
    rustix::io::write(&f, b"deep").unwrap();
}

#[test]
fn trees_a_container_can_write_never_crash_the_daemon() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private_with("hostile-trees", "trash_retention = \"0s\"\n");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"deep"}"#);
    let mp = d.call_ok("VolumeDriver.Mount", r#"{"Name":"deep","ID":"c"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    deep_tree(std::path::Path::new(&mp), 12_000);
    // A wide directory and links of every kind beside it.
    std::fs::create_dir(format!("{mp}/wide")).unwrap();
    for i in 0..5_000 {
        std::fs::File::create(format!("{mp}/wide/{i}")).unwrap();
    }
    std::os::unix::fs::symlink("/etc", format!("{mp}/etc")).unwrap();
    std::fs::hard_link(format!("{mp}/wide/1"), format!("{mp}/hard")).unwrap();
    // Unmount measures the volume: a walk of the whole tree.
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"deep","ID":"c"}"#);
    let id = d.id_of("deep");
    let snap = d.snapshot(&id, "deep-snap");
    d.call_ok(
        "VolumeDriver.Create",
        &json!({ "Name": "copy", "Opts": { "from-snapshot": snap } }).to_string(),
    );
    assert_eq!(d.settle("/v1/volumes/copy")["transitioning"], "no");
    d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": snap }),
        202,
    );
    assert_eq!(d.settle(&format!("/v1/volumes/{id}"))["transitioning"], "no");
    // Remove purges at once (retention 0): a walk that deletes it all.
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"deep"}"#);
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"copy"}"#);
    d.restart();
    assert!(d.names().is_empty());
    assert_eq!(pool_entries(&d), 0, "every deep tree is gone");
    // What a revert replaced is deleted in the background: wait for it
    // (the test's own clean-up could not delete so deep a tree).
    let trash = d.state_dir().join("pools/default/trash");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::fs::read_dir(&trash).map_or(0, |e| e.count()) > 0 {
        assert!(std::time::Instant::now() < deadline, "the trash was never emptied");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(std::path::Path::new("/etc/passwd").exists());
}

#[test]
fn a_flood_of_calls_for_invented_names_leaves_memory_flat() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("hostile-flood");
    let round = |from: usize| {
        std::thread::scope(|s| {
            for t in 0..2 {
                let sock = d.plugin_socket.clone();
                s.spawn(move || {
                    let mut c = crate::harness::Conn::new(&sock);
                    for i in (from + t..from + 50_000).step_by(2) {
                        let body = json!({ "Name": format!("ghost{i}"), "ID": "x" }).to_string();
                        assert_eq!(c.call("VolumeDriver.Unmount", &body).0, 200);
                    }
                });
            }
        })
    };
    // The first round warms every allocation up; the second must not grow.
    round(0);
    let before = d.rss_kib();
    round(50_000);
    round(100_000);
    let after = d.rss_kib();
    eprintln!("flood: RSS {before} KiB → {after} KiB after 100,000 Unmounts of invented names");
    assert!(after < before + 8 * 1024, "memory grew from {before} KiB to {after} KiB");
}

/// Swaps each file `f…` in `dir` for a FIFO and back, round after round,
/// until `stop`: what a container can do to its volume while ballast
/// copies it. Returns how many swaps it made.
fn keep_swapping_files_for_fifos(dir: &std::path::Path, files: usize, stop: &AtomicBool) -> u64 {
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..files {
            let path = dir.join(format!("f{i}"));
            let was_file = path.symlink_metadata().is_ok_and(|m| m.is_file());
            let _ = std::fs::remove_file(&path);
            if was_file {
                rfs::mknodat(rfs::CWD, &path, rfs::FileType::Fifo, Mode::from_raw_mode(0o644), 0)
                    .unwrap();
            } else {
                std::fs::write(&path, format!("file {i}")).unwrap();
            }
            swaps += 1;
        }
    }
    swaps
}

#[test]
fn a_container_swapping_files_for_fifos_never_stalls_a_snapshot_a_backup_or_shutdown() {
    if !root_or_skip() {
        return;
    }
    const FILES: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = crate::backup::repo_in(dir.path());
    let config = crate::backup::target("fifo-nas", &repo, &key, "");
    let mut d = Daemon::private_with("hostile-fifos", &config);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"fifo-swapped"}"#);
    let mount = d.call_ok("VolumeDriver.Mount", r#"{"Name":"fifo-swapped","ID":"c"}"#);
    let mp = std::path::PathBuf::from(mount["Mountpoint"].as_str().unwrap());
    for i in 0..FILES {
        std::fs::write(mp.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    let id = d.id_of("fifo-swapped");
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let swaps = std::thread::scope(|s| {
        let swapper = s.spawn(|| keep_swapping_files_for_fifos(&mp, FILES, &stop));
        // Each copies the volume while it changes; each must end.
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            d.snapshot(&id, "during-swaps");
            crate::backup::backup(&d, &["fifo-swapped"]);
        }));
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        if let Err(panic) = done {
            std::panic::resume_unwind(panic);
        }
        swaps
    });
    let took = started.elapsed();
    println!("a snapshot and a backup took {took:?} amid {swaps} swaps");
    // Seconds alone; a loaded machine gets room (a stalled copy never ends).
    assert!(took < Duration::from_secs(120), "{took:?}");
    assert!(swaps > FILES as u64, "the volume changed throughout: {swaps} swaps");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"fifo-swapped","ID":"c"}"#);
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"fifo-swapped"}"#);
    assert!(d.names().is_empty(), "the volume is removed");
    // Within the harness's bound, or it fails.
    assert!(d.terminate(), "the daemon stops cleanly");
}
