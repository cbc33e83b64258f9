//! The admin endpoint: the volume state table, snapshots and revert, the
//! trash, filters, errors and access control. No Docker engine needed:
//! Docker's Mount is spoken on the plugin socket directly.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Conn, Daemon, root_or_skip};

const ACTIONS: [&str; 10] = [
    "allocate",
    "activate",
    "deactivate",
    "deallocate",
    "snapshot",
    "reverttosnapshot",
    "restorefrombackup",
    "remove",
    "restore",
    "purge",
];

/// A new volume walked into `state`; returns its id.
fn volume_in(d: &Daemon, name: &str, state: &str) -> String {
    volume_with_snapshot_in(d, name, state).0
}

/// A new volume with one snapshot, walked into `state`; returns the ids.
fn volume_with_snapshot_in(d: &Daemon, name: &str, state: &str) -> (String, String) {
    let v = d.admin_ok("POST", "/v1/volumes", json!({ "name": name }), 201);
    let id = v["id"].as_str().unwrap().to_string();
    let snap = snapshot_of(d, &id, &format!("{name}-snap"));
    let act = |a: &str, body: Value| {
        d.admin_ok("POST", &format!("/v1/volumes/{id}?action={a}"), body, 200)
    };
    match state {
        "inactive" => {}
        "requested" => {
            act("deallocate", json!({ "force": true }));
        }
        "active" => {
            act("activate", Value::Null);
        }
        "removed" => {
            act("remove", Value::Null);
        }
        other => panic!("no recipe for {other}"),
    }
    assert_eq!(d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200)["state"], state);
    (id, snap)
}

/// A created snapshot of the volume `id`; returns the snapshot id.
/// The id of the snapshot of volume `id` named `name`.
fn volume_snapshot(d: &Daemon, id: &str, name: &str) -> String {
    let col =
        d.admin_ok("GET", &format!("/v1/snapshots?volumeId={id}&name={name}"), Value::Null, 200);
    col["data"][0]["id"].as_str().unwrap().to_string()
}

fn snapshot_of(d: &Daemon, id: &str, name: &str) -> String {
    let s = d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=snapshot"),
        json!({ "name": name }),
        202,
    );
    let sid = s["id"].as_str().unwrap().to_string();
    let s = d.settle(&format!("/v1/snapshots/{sid}"));
    assert_eq!(s["state"], "created", "{s}");
    sid
}

/// What each action does from each state (SPEC §4): the state it leads
/// to, or None where it must answer 409 and change nothing.
fn expected(state: &str, action: &str) -> Option<&'static str> {
    match (state, action) {
        ("requested", "allocate") => Some("inactive"),
        ("requested", "remove") => Some("removed"),
        ("inactive", "activate") => Some("active"),
        ("inactive", "deallocate") => Some("requested"),
        ("inactive", "snapshot") => Some("inactive"),
        ("inactive", "reverttosnapshot") => Some("inactive"),
        ("inactive", "remove") => Some("removed"),
        ("active", "deactivate") => Some("inactive"),
        ("active", "snapshot") => Some("active"),
        ("removed", "restore") => Some("inactive"),
        ("removed", "purge") => Some("purged"),
        _ => None,
    }
}

#[test]
fn every_action_from_every_state() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-states");
    let mut n = 0;
    for state in ["requested", "inactive", "active", "removed"] {
        for action in ACTIONS {
            n += 1;
            let (id, snap) = volume_with_snapshot_in(&d, &format!("v{n}"), state);
            let path = format!("/v1/volumes/{id}");
            let before = d.admin_ok("GET", &path, Value::Null, 200);
            let listed = before["actions"].as_object().unwrap().contains_key(action);
            let input = json!({ "force": true, "snapshotId": snap, "backupId": "1b1" });
            let (status, body) = d.admin("POST", &format!("{path}?action={action}"), input);
            if action == "restorefrombackup" && matches!(state, "requested" | "inactive") {
                // The state allows it; backup 1b1 does not exist.
                assert_eq!((status, body["code"].as_str()), (404, Some("NotFound")), "{body}");
                assert!(listed, "restorefrombackup from {state} is not in `actions`: {before}");
                continue;
            }
            match expected(state, action) {
                Some(to) => {
                    assert!(
                        status == 200 || status == 202,
                        "{action} from {state}: {status} {body}"
                    );
                    assert!(
                        listed,
                        "{action} from {state} works but is not in `actions`: {before}"
                    );
                    let after = d.settle(&path);
                    assert_eq!(after["state"], to, "{action} from {state}");
                    assert_eq!(after["transitioning"], "no", "{action} from {state}: {after}");
                }
                None => {
                    assert_eq!(status, 409, "{action} from {state} should be refused: {body}");
                    assert_eq!(body["code"], "InvalidState", "{body}");
                    assert!(!body["message"].as_str().unwrap().is_empty());
                    assert!(!listed, "{action} from {state} is refused but listed in `actions`");
                    assert_eq!(
                        d.admin_ok("GET", &path, Value::Null, 200),
                        before,
                        "{action} from {state} changed it"
                    );
                }
            }
        }
    }
    let (status, body) = d.admin("POST", "/v1/volumes/v1?action=explode", Value::Null);
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("unknown volume action \"explode\""));
}

#[test]
fn deallocate_without_force_keeps_the_data() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-dealloc");
    let id = volume_in(&d, "keep", "inactive");
    let mp = d.get("keep")["Mountpoint"].as_str().unwrap().to_string();
    std::fs::write(format!("{mp}/f"), b"x").unwrap();
    let (status, body) =
        d.admin("POST", &format!("/v1/volumes/{id}?action=deallocate"), Value::Null);
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("force"), "{body}");
    assert!(std::path::Path::new(&format!("{mp}/f")).exists());
}

#[test]
fn snapshot_write_revert_and_refusal_while_mounted() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-revert");
    let id = volume_in(&d, "data", "inactive");
    let mp = d.get("data")["Mountpoint"].as_str().unwrap().to_string();
    std::fs::write(format!("{mp}/f"), b"v1").unwrap();
    let snap = snapshot_of(&d, &id, "first");
    d.admin_ok(
        "DELETE",
        &format!("/v1/snapshots/{}", volume_snapshot(&d, &id, "data-snap")),
        Value::Null,
        200,
    );
    std::fs::write(format!("{mp}/f"), b"v2").unwrap();
    std::fs::write(format!("{mp}/later"), b"x").unwrap();

    // Mounted by a container: refused, naming it.
    d.call_ok("VolumeDriver.Mount", r#"{"Name":"data","ID":"container-42"}"#);
    let path = format!("/v1/volumes/{id}?action=reverttosnapshot");
    let (status, body) = d.admin("POST", &path, json!({ "snapshotId": snap }));
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("container-42"), "{body}");
    assert_eq!(std::fs::read(format!("{mp}/f")).unwrap(), b"v2", "nothing changed");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"data","ID":"container-42"}"#);

    let v = d.admin_ok("POST", &path, json!({ "snapshotId": "first" }), 202);
    assert_eq!(v["state"], "inactive");
    let v = d.settle(&format!("/v1/volumes/{id}"));
    assert_eq!(v["transitioning"], "no", "{v}");
    assert_eq!(std::fs::read(format!("{mp}/f")).unwrap(), b"v1");
    assert!(!std::path::Path::new(&format!("{mp}/later")).exists());

    // A snapshot of another volume cannot be used.
    let other = volume_in(&d, "other", "inactive");
    let (status, _) = d.admin(
        "POST",
        &format!("/v1/volumes/{other}?action=reverttosnapshot"),
        json!({ "snapshotId": snap }),
    );
    assert_eq!(status, 422);

    // from-snapshot makes a new volume with the snapshot's content.
    d.call_ok(
        "VolumeDriver.Create",
        &json!({ "Name": "clone", "Opts": { "from-snapshot": snap } }).to_string(),
    );
    assert_eq!(d.settle("/v1/volumes/clone")["transitioning"], "no");
    let clone = d.get("clone")["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(format!("{clone}/f")).unwrap(), b"v1");

    // Removing the snapshot removes its data; the count follows.
    assert_eq!(d.get("data")["Status"]["snapshots"], 1);
    d.admin_ok("DELETE", &format!("/v1/snapshots/{snap}"), Value::Null, 200);
    assert_eq!(d.get("data")["Status"]["snapshots"], 0);
    d.admin_ok("GET", &format!("/v1/snapshots/{snap}"), Value::Null, 404);
}

#[test]
fn a_mount_during_a_revert_is_refused_and_never_sees_a_mix() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-revert-race");
    let id = volume_in(&d, "big", "inactive");
    let mp = d.get("big")["Mountpoint"].as_str().unwrap().to_string();
    for i in 0..100 {
        std::fs::create_dir(format!("{mp}/d{i}")).unwrap();
        for j in 0..100 {
            std::fs::write(format!("{mp}/d{i}/f{j}"), b"old").unwrap();
        }
    }
    let snap = snapshot_of(&d, &id, "base");
    for i in 0..100 {
        for j in 0..100 {
            std::fs::write(format!("{mp}/d{i}/f{j}"), b"new").unwrap();
        }
    }
    d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": snap }),
        202,
    );
    // Until it is done, Mount is refused with a reason; once it succeeds,
    // every file is the snapshot's.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    loop {
        let (status, body) = d.call("VolumeDriver.Mount", r#"{"Name":"big","ID":"c"}"#);
        if status == 200 {
            break;
        }
        assert!(body["Err"].as_str().unwrap().contains("busy"), "{body}");
        refused += 1;
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..100 {
        for j in 0..100 {
            assert_eq!(
                std::fs::read(format!("{mp}/d{i}/f{j}")).unwrap(),
                b"old",
                "d{i}/f{j} (refused {refused}x)"
            );
        }
    }
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"big","ID":"c"}"#);
}

#[test]
fn trash_remove_restore_and_purge() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-trash");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db"}"#);
    let mp = d.get("db")["Mountpoint"].as_str().unwrap().to_string();
    std::fs::write(format!("{mp}/rows"), b"precious").unwrap();
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"db"}"#);
    let trash = d.admin_ok("GET", "/v1/volumes?state=removed", Value::Null, 200);
    assert_eq!(trash["data"][0]["name"], "db");
    let old_id = trash["data"][0]["id"].as_str().unwrap().to_string();

    // The name is free at once; restoring then needs another name.
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db"}"#);
    let (status, body) =
        d.admin("POST", &format!("/v1/volumes/{old_id}?action=restore"), Value::Null);
    assert_eq!((status, body["code"].as_str()), (409, Some("Conflict")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("taken"), "{body}");
    let v = d.admin_ok(
        "POST",
        &format!("/v1/volumes/{old_id}?action=restore"),
        json!({ "name": "db-old" }),
        200,
    );
    assert_eq!((v["name"].as_str(), v["state"].as_str()), (Some("db-old"), Some("inactive")));
    let restored = d.get("db-old")["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(format!("{restored}/rows")).unwrap(), b"precious");

    // Purge destroys the data and leaves a tombstone.
    d.admin_ok("DELETE", &format!("/v1/volumes/{old_id}"), Value::Null, 200);
    let v = d.admin_ok("POST", &format!("/v1/volumes/{old_id}?action=purge"), Value::Null, 200);
    assert_eq!(v["state"], "purged");
    assert!(!std::path::Path::new(&restored).exists(), "data destroyed");
    assert_eq!(
        d.admin_ok("GET", &format!("/v1/volumes/{old_id}"), Value::Null, 200)["state"],
        "purged"
    );
    let trash = d.admin_ok("GET", "/v1/volumes?state=removed", Value::Null, 200);
    assert_eq!(trash["data"].as_array().unwrap().len(), 0);
}

#[test]
fn removed_volumes_expire_after_the_retention() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private_with("admin-retention", "trash_retention = \"1s\"\n");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"tmp"}"#);
    let mp = d.get("tmp")["Mountpoint"].as_str().unwrap().to_string();
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"tmp"}"#);
    assert!(std::path::Path::new(&mp).exists(), "kept in the trash at first");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&mp).exists() {
        assert!(Instant::now() < deadline, "not purged after the retention");
        std::thread::sleep(Duration::from_millis(100));
    }
    let trash = d.admin_ok("GET", "/v1/volumes?state=removed", Value::Null, 200);
    assert!(trash["data"].as_array().unwrap().is_empty());
}

#[test]
fn collections_filters_updates_and_errors() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-rest");
    let root = d.admin_ok("GET", "/v1", Value::Null, 200);
    for c in ["volumes", "snapshots", "backups", "storagepools", "backuptargets"] {
        assert!(root["links"][c].as_str().unwrap().ends_with(&format!("/v1/{c}")), "{root}");
        let col = d.admin_ok("GET", &format!("/v1/{c}"), Value::Null, 200);
        assert_eq!(col["type"], "collection", "{c}");
    }
    d.admin_ok("POST", "/v1/volumes", json!({ "name": "a", "description": "first" }), 201);
    d.admin_ok(
        "POST",
        "/v1/volumes",
        json!({ "name": "b", "driverOpts": { "mode": "0700" } }),
        201,
    );
    let b = d.admin_ok("GET", "/v1/volumes/b", Value::Null, 200);
    assert_eq!(b["type"], "volume");
    assert_eq!(b["driver"], "admin-rest");
    assert_eq!(b["storagePoolId"], "default");
    assert!(
        b["links"]["self"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/volumes/{}", b["id"].as_str().unwrap()))
    );
    d.admin_ok("POST", "/v1/volumes/b?action=activate", Value::Null, 200);

    let names = |q: &str| -> Vec<String> {
        let col = d.admin_ok("GET", &format!("/v1/volumes{q}"), Value::Null, 200);
        col["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(""), ["a", "b"]);
    assert_eq!(names("?name=a"), ["a"]);
    assert_eq!(names("?state=active"), ["b"]);
    assert_eq!(names("?state=inactive&name=b"), Vec::<String>::new());
    let (status, body) = d.admin("GET", "/v1/volumes?colour=red", Value::Null);
    assert_eq!((status, body["code"].as_str()), (422, Some("InvalidInput")));

    // Description is the one updatable field.
    let a = d.admin_ok("PUT", "/v1/volumes/a", json!({ "description": "changed" }), 200);
    assert_eq!(a["description"], "changed");
    let (status, body) = d.admin("PUT", "/v1/volumes/a", json!({ "name": "z" }));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("only `description` and `schedule` can be updated")
    );
    assert_eq!(names(""), ["a", "b"]);

    let cases: [(&str, &str, Value, u16, &str); 6] = [
        ("GET", "/v1/volumes/nope", Value::Null, 404, "NotFound"),
        ("GET", "/v1/nothing", Value::Null, 404, "NotFound"),
        (
            "POST",
            "/v1/volumes",
            json!({ "name": "a", "driverOpts": { "mode": "0755" } }),
            409,
            "Conflict",
        ),
        ("POST", "/v1/volumes", json!({ "name": "../x" }), 422, "InvalidInput"),
        (
            "POST",
            "/v1/volumes",
            json!({ "name": "c", "driverOpts": { "colour": "red" } }),
            422,
            "InvalidInput",
        ),
        (
            "POST",
            "/v1/volumes/a?action=restorefrombackup",
            json!({ "backupId": "1b1" }),
            404,
            "NotFound",
        ),
    ];
    for (verb, path, body, status, code) in cases {
        let (got, v) = d.admin(verb, path, body);
        assert_eq!((got, v["code"].as_str()), (status, Some(code)), "{verb} {path}: {v}");
        assert_eq!(v["type"], "error");
        assert_eq!(v["status"], status);
    }
    let (status, _, text) = Conn::new(&d.admin_socket).request("POST", "/v1/volumes", "{not json");
    assert_eq!(status, 422, "{text}");
    assert_eq!(names(""), ["a", "b"], "no error changed anything");

    let pools = d.admin_ok("GET", "/v1/storagepools", Value::Null, 200);
    let p = &pools["data"][0];
    assert_eq!(
        (p["name"].as_str(), p["backend"].as_str(), p["volumeCount"].as_u64()),
        (Some("default"), Some("dir"), Some(2))
    );
    assert!(p["capacityBytes"].as_u64().unwrap() > 0);
}

#[test]
fn tcp_admin_needs_the_configured_credentials() {
    if !root_or_skip() {
        return;
    }
    let port = 20000 + (std::process::id() % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let config = "[admin]\naccess_key = \"ops\"\nsecret_key = \"s3cr3t-key\"\n";
    let d = Daemon::private_with_args("admin-tcp", config, &["--admin-listen", &addr]);
    let get = |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        let auth = auth.map(|a| format!("Authorization: Basic {a}\r\n")).unwrap_or_default();
        write!(s, "GET /v1/volumes HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    use base64::Engine;
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(get(None), 401);
    assert_eq!(get(Some(&enc("ops:wrong"))), 401);
    assert_eq!(get(Some(&enc("ops:s3cr3t-key2"))), 401);
    assert_eq!(get(Some(&enc("ops:s3cr3t-key"))), 200);
    // The Unix socket is guarded by its mode instead.
    assert_eq!(std::fs::metadata(&d.admin_socket).unwrap().mode() & 0o777, 0o600);
    d.admin_ok("GET", "/v1/volumes", Value::Null, 200);

    // Without credentials configured, the TCP listener is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let err = crate::harness::serve_must_fail(
        dir.path(),
        &["--admin-listen".as_ref(), "127.0.0.1:1".as_ref()],
        &[],
    );
    assert!(err.contains("needs [admin] access_key and secret_key"), "{err}");
}

#[test]
fn the_admin_socket_can_be_shared_with_a_group() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private_with("admin-group", "[admin]\nsocket_group = \"4242\"\n");
    let meta = std::fs::metadata(&d.admin_socket).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 4242));
    assert_eq!(
        std::fs::metadata(&d.plugin_socket).unwrap().mode() & 0o777,
        0o600,
        "the plugin socket stays root-only"
    );
}

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
            let sum: u64 = content.iter().map(|b| *b as u64).sum();
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

#[test]
fn metrics_are_prometheus_text_and_count_what_happened() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-metrics");
    let id = volume_in(&d, "m1", "active");
    volume_in(&d, "m2", "removed");
    d.call_ok("VolumeDriver.Get", r#"{"Name":"m1"}"#);
    d.call("VolumeDriver.Get", r#"{"Name":"ghost"}"#);
    let (status, head, text) = Conn::new(&d.admin_socket).request("GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or("");
            assert!(["HELP", "TYPE", "UNIT", "EOF"].contains(&kind), "bad comment line: {line}");
            continue;
        }
        // name{labels} value
        let (series, value) =
            line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line: {line}"));
        value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.is_empty(),
            "bad metric name in: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples.insert(series.to_string(), value.to_string());
    }
    assert_eq!(text.lines().last(), Some("# EOF"));
    let get = |k: &str| samples.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}")).as_str();
    assert_eq!(get(r#"ballast_volumes{state="active"}"#), "1");
    assert_eq!(get(r#"ballast_volumes{state="removed"}"#), "1");
    assert_eq!(get(r#"ballast_snapshots{state="created"}"#), "2");
    assert_eq!(
        get(
            r#"ballast_requests_total{listener="plugin",endpoint="VolumeDriver.Get",status="200"}"#
        ),
        "1"
    );
    assert_eq!(
        get(
            r#"ballast_requests_total{listener="plugin",endpoint="VolumeDriver.Get",status="500"}"#
        ),
        "1"
    );
    let posts =
        get(r#"ballast_requests_total{listener="admin",endpoint="POST /v1/volumes",status="201"}"#);
    assert_eq!(posts, "2");
    assert_eq!(get("ballast_snapshot_duration_seconds_count"), "2");
    assert!(get(r#"ballast_pool_capacity_bytes{pool="default"}"#).parse::<f64>().unwrap() > 0.0);
    assert_eq!(get(r#"ballast_pool_volumes{pool="default"}"#), "1");
    let _ = id;
}

#[test]
fn the_openapi_document_validates_and_matches_the_routes() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-openapi");
    let doc = d.admin_ok("GET", "/v1/openapi.json", Value::Null, 200);
    let file = d.dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    match std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            crate::harness::skip(
                "openapi-spec-validator is not installed (pip install openapi-spec-validator)",
            )
        }
        Ok(out) => {
            panic!("the OpenAPI document is invalid: {}", String::from_utf8_lossy(&out.stdout))
        }
        Err(e) => crate::harness::skip(&format!("python3: {e}")),
    }
    // Every route of SPEC §5 is documented, and nothing else.
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for verb in ["get", "put", "post", "delete"] {
            if item.get(verb).is_some() {
                documented.push(format!("{} {path}", verb.to_uppercase()));
            }
        }
    }
    documented.sort();
    let mut expected = vec![
        "GET /healthz",
        "GET /metrics",
        "GET /v1",
        "GET /v1/openapi.json",
        "GET /v1/volumes",
        "POST /v1/volumes",
        "GET /v1/volumes/{id}",
        "PUT /v1/volumes/{id}",
        "DELETE /v1/volumes/{id}",
        "POST /v1/volumes/{id}",
        "GET /v1/snapshots",
        "GET /v1/snapshots/{id}",
        "DELETE /v1/snapshots/{id}",
        "POST /v1/snapshots/{id}",
        "GET /v1/backups",
        "GET /v1/backups/{id}",
        "DELETE /v1/backups/{id}",
        "POST /v1/backups",
        "POST /v1/backups/{id}",
        "GET /v1/storagepools",
        "GET /v1/storagepools/{id}",
        "GET /v1/backuptargets",
        "GET /v1/backuptargets/{id}",
        "POST /v1/backuptargets/{id}",
    ];
    expected.sort();
    assert_eq!(documented, expected);
    // And every documented operation is routed: no "no route", no 405.
    for op in &documented {
        let (verb, path) = op.split_once(' ').unwrap();
        let path = path.replace("{id}", "zz-missing");
        let (status, _, body) = Conn::new(&d.admin_socket).request(verb, &path, "");
        assert_ne!(status, 405, "{op} is documented but not routed");
        assert!(!body.contains("no route"), "{op} is documented but not routed: {body}");
    }
}

#[test]
fn host_path_volumes_stay_inside_their_roots_and_are_never_deleted() {
    if !root_or_skip() {
        return;
    }
    let hosts = tempfile::tempdir().unwrap();
    let roots = hosts.path().join("srv");
    let site = roots.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), b"hello").unwrap();
    std::fs::write(roots.join("neighbour"), b"untouched").unwrap();
    let outside = hosts.path().join("etc");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, roots.join("sneaky")).unwrap();
    let config = format!("trash_retention = \"0s\"\nhost_path_roots = [\"{}\"]\n", roots.display());
    let d = Daemon::private_with("admin-hostpath", &config);

    let create = |name: &str, path: &std::path::Path| {
        d.call(
            "VolumeDriver.Create",
            &json!({ "Name": name, "Opts": { "path": path } }).to_string(),
        )
    };
    for (path, needle) in [
        (outside.clone(), "is not inside host_path_roots"),
        (roots.join("sneaky"), "is not inside host_path_roots"),
        (roots.clone(), "is not inside host_path_roots"),
        (roots.join("missing"), "No such file"),
        (roots.join("neighbour"), "not a directory"),
    ] {
        let (status, body) = create("bad", &path);
        assert_ne!(status, 200, "{}", path.display());
        assert!(body["Err"].as_str().unwrap().contains(needle), "{}: {body}", path.display());
    }
    let err = d.call_err(
        "VolumeDriver.Create",
        &json!({ "Name": "bad", "Opts": { "path": &site, "size": "1G" } }).to_string(),
    );
    assert!(err.contains("cannot be combined with path"), "{err}");
    assert!(d.names().is_empty());

    let (status, body) = create("web", &site);
    assert_eq!(status, 200, "{body}");
    let v = d.admin_ok("GET", "/v1/volumes/web", Value::Null, 200);
    assert_eq!(v["isHostPath"], true);
    assert_eq!(v["uri"], format!("file://{}", site.display()));
    assert_eq!(d.get("web")["Mountpoint"], site.to_str().unwrap());
    let (status, body) = create("again", &site);
    assert_ne!(status, 200);
    assert!(body["Err"].as_str().unwrap().contains("already is"), "{body}");

    // Snapshots and revert work as on the dir pool.
    let id = v["id"].as_str().unwrap().to_string();
    let snap = snapshot_of(&d, &id, "web-snap");
    std::fs::write(site.join("index.html"), b"defaced").unwrap();
    std::fs::write(site.join("extra"), b"x").unwrap();
    d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": snap }),
        202,
    );
    assert_eq!(d.settle(&format!("/v1/volumes/{id}"))["transitioning"], "no");
    assert_eq!(std::fs::read(site.join("index.html")).unwrap(), b"hello");
    assert!(!site.join("extra").exists());
    let mut left: Vec<_> =
        std::fs::read_dir(&roots).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["neighbour", "site", "sneaky"], "nothing left beside the host dir");

    // Remove and purge (retention 0) never delete the host directory.
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"web"}"#);
    let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    assert_eq!(v["state"], "purged");
    assert_eq!(std::fs::read(site.join("index.html")).unwrap(), b"hello");
    assert_eq!(std::fs::read(roots.join("neighbour")).unwrap(), b"untouched");
}

#[test]
fn host_paths_are_refused_without_roots() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("admin-noroots");
    let dir = tempfile::tempdir().unwrap();
    let err = d.call_err(
        "VolumeDriver.Create",
        &json!({ "Name": "h", "Opts": { "path": dir.path() } }).to_string(),
    );
    assert!(err.contains("host_path_roots is empty"), "{err}");
}

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

#[test]
fn a_vanished_host_path_is_an_error_and_is_not_recreated() {
    if !root_or_skip() {
        return;
    }
    let hosts = tempfile::tempdir().unwrap();
    let roots = hosts.path().join("srv");
    let site = roots.join("team/site");
    std::fs::create_dir_all(&site).unwrap();
    let d = Daemon::private_with(
        "admin-hostgone",
        &format!("host_path_roots = [\"{}\"]\n", roots.display()),
    );
    d.call_ok(
        "VolumeDriver.Create",
        &json!({ "Name": "gone", "Opts": { "path": &site } }).to_string(),
    );
    std::fs::remove_dir_all(roots.join("team")).unwrap();
    let err = d.call_err("VolumeDriver.Mount", r#"{"Name":"gone","ID":"c"}"#);
    assert!(err.contains("host path"), "{err}");
    assert!(!roots.join("team").exists(), "nothing was recreated on the host");
}
