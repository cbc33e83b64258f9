//! Snapshots and reverts keep a volume whole: every kind of file with its
//! metadata, and no half state after a kill -9 during a snapshot, a revert
//! or a fill.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_actions::{snapshot_of, volume_in};
use crate::harness::{Daemon, root_or_skip};

/// Everything `ls -l`, `stat` and `getfattr` would show about a tree.
fn describe_tree(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut inodes = std::collections::HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            let mut kids: Vec<_> =
                std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            kids.sort();
            stack.extend(kids);
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink->{}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            let n = inodes.len();
            let group = *inodes.entry(m.ino()).or_insert(n);
            let content = std::fs::read(&p).unwrap();
            let sum: u64 = content.iter().map(|b| u64::from(*b)).sum();
            format!(
                "file len={} sum={sum} link-group={group} sparse={}",
                m.len(),
                m.blocks() * 512 < m.len()
            )
        };
        let mtime = if ft.is_dir() { 0 } else { m.mtime() }; // a dir's mtime moves as it is filled
        let xattr = rustix::fs::lgetxattr(&p, "user.ballast", &mut [0u8; 64][..])
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "-".into());
        out.push(format!(
            "{rel} {kind} mode={:o} owner={}:{} mtime={mtime} xattr={xattr}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ));
    }
    out.sort();
    out
}

#[test]
fn snapshot_and_revert_keep_every_kind_of_file() {
    if !root_or_skip() {
        return;
    }
    use std::os::unix::fs::{PermissionsExt, symlink};
    let d = Daemon::private("admin-fidelity");
    let id = volume_in(&d, "rich", "inactive");
    let mp = std::path::PathBuf::from(d.get("rich")["Mountpoint"].as_str().unwrap());
    let set = |p: &std::path::Path, mode: u32, uid: u32, gid: u32| {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
        if !p.is_symlink() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    std::fs::create_dir(mp.join("dir")).unwrap();
    std::fs::write(mp.join("dir/data"), b"hello world").unwrap();
    set(&mp.join("dir/data"), 0o640, 1001, 1002);
    set(&mp.join("dir"), 0o751, 1001, 1002);
    std::fs::write(mp.join("setuid"), b"#!/bin/sh\n").unwrap();
    set(&mp.join("setuid"), 0o4755, 0, 0);
    std::fs::create_dir(mp.join("sticky")).unwrap();
    set(&mp.join("sticky"), 0o1777, 0, 0);
    std::fs::hard_link(mp.join("dir/data"), mp.join("hardlink")).unwrap();
    symlink("dir/data", mp.join("symlink")).unwrap();
    symlink("/nowhere/at/all", mp.join("dangling")).unwrap();
    std::os::unix::fs::lchown(mp.join("symlink"), Some(1234), Some(1234)).unwrap();
    let sparse = std::fs::File::create(mp.join("sparse")).unwrap();
    sparse.set_len(100 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"middle", 50 << 20).unwrap();
    drop(sparse);
    rustix::fs::lsetxattr(
        mp.join("dir/data"),
        "user.ballast",
        b"tagged",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    assert!(std::process::Command::new("mkfifo").arg(mp.join("fifo")).status().unwrap().success());
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    std::fs::File::options()
        .write(true)
        .open(mp.join("dir/data"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    set(&mp, 0o750, 999, 998);
    let before = describe_tree(&mp);

    let snap = snapshot_of(&d, &id, "rich-snap");
    // Wreck everything.
    for entry in std::fs::read_dir(&mp).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    std::fs::write(mp.join("junk"), b"junk").unwrap();
    set(&mp, 0o700, 0, 0);
    assert_ne!(describe_tree(&mp), before);

    d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": snap }),
        202,
    );
    d.settle(&format!("/v1/volumes/{id}"));
    assert_eq!(describe_tree(&mp), before);
}

/// A dir volume with 100 directories of 100 small files, all `content`.
fn fill_many(mp: &str, content: &[u8]) {
    for i in 0..100 {
        let dir = format!("{mp}/d{i}");
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..100 {
            std::fs::write(format!("{dir}/f{j}"), content).unwrap();
        }
    }
}

/// Every file's content, counted: {content → files}.
fn census(mp: &str) -> std::collections::BTreeMap<Vec<u8>, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..100 {
        for j in 0..100 {
            if let Ok(c) = std::fs::read(format!("{mp}/d{i}/f{j}")) {
                *seen.entry(c).or_insert(0) += 1;
            }
        }
    }
    seen
}

#[test]
fn kill9_during_snapshot_revert_and_fill_leaves_no_half_state() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private("admin-crash");
    let id = volume_in(&d, "big", "inactive");
    let mp = d.get("big")["Mountpoint"].as_str().unwrap().to_string();
    fill_many(&mp, b"old");
    let base = snapshot_of(&d, &id, "base");
    fill_many(&mp, b"new");

    // A revert killed half-way: afterwards the volume is all old or all
    // new, says it was interrupted, and can be reverted again.
    d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": base }),
        202,
    );
    std::thread::sleep(Duration::from_millis(30));
    d.kill9();
    // And a snapshot and a fill killed with it, when they are still running.
    d.start_again();
    let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    eprintln!("after the killed revert: transitioning {}", v["transitioning"]);
    let seen = census(&mp);
    assert_eq!(seen.values().sum::<usize>(), 10_000, "no file lost: {seen:?}");
    assert_eq!(seen.len(), 1, "never a mix of old and new: {seen:?}");
    if v["transitioning"] == "error" {
        assert!(v["transitioningMessage"].as_str().unwrap().contains("interrupted"), "{v}");
    }
    d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": base }),
        202,
    );
    assert_eq!(d.settle(&format!("/v1/volumes/{id}"))["transitioning"], "no");
    assert_eq!(census(&mp).keys().collect::<Vec<_>>(), [&b"old".to_vec()]);

    d.admin_ok("POST", &format!("/v1/volumes/{id}?action=snapshot"), json!({ "name": "cut" }), 202);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"copy","Opts":{"from-volume":"big"}}"#);
    d.kill9();
    d.start_again();
    let snaps = d.admin_ok("GET", "/v1/snapshots?name=cut", Value::Null, 200);
    let cut = &snaps["data"][0];
    eprintln!("after the killed snapshot: {}", cut["state"]);
    assert!(cut["state"] == "created" || cut["state"] == "error", "{cut}");
    if cut["state"] == "error" {
        assert!(cut["transitioningMessage"].as_str().unwrap().contains("interrupted"), "{cut}");
        d.admin_ok(
            "DELETE",
            &format!("/v1/snapshots/{}", cut["id"].as_str().unwrap()),
            Value::Null,
            200,
        );
    }
    // The cut fill starts again from scratch and ends complete; until it
    // does, Mount waits instead of showing a partial copy.
    let copy_mp = d.get("copy")["Mountpoint"].as_str().unwrap().to_string();
    d.call_ok("VolumeDriver.Mount", r#"{"Name":"copy","ID":"after"}"#);
    assert_eq!(census(&copy_mp).values().sum::<usize>(), 10_000, "the clone is whole");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"copy","ID":"after"}"#);
    let copy = d.settle("/v1/volumes/copy");
    assert_eq!(copy["transitioning"], "no", "{copy}");
    let staging = d.state_dir().join("pools/default/staging");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "interrupted work is cleared");
    assert_eq!(
        census(&mp).keys().collect::<Vec<_>>(),
        [&b"old".to_vec()],
        "the source is untouched"
    );
}
