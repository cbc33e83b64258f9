//! The admin endpoint's volume actions: every action from every state,
//! deallocate, snapshot and revert (also against a concurrent Mount), the
//! trash (remove, restore, purge) and its retention. No Docker engine
//! needed: Docker's Mount is spoken on the plugin socket directly.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Daemon, root_or_skip};

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
pub(crate) fn volume_in(d: &Daemon, name: &str, state: &str) -> String {
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

/// The id of the snapshot of volume `id` named `name`.
fn volume_snapshot(d: &Daemon, id: &str, name: &str) -> String {
    let col =
        d.admin_ok("GET", &format!("/v1/snapshots?volumeId={id}&name={name}"), Value::Null, 200);
    col["data"][0]["id"].as_str().unwrap().to_string()
}

/// A created snapshot of the volume `id`; returns the snapshot id.
pub(crate) fn snapshot_of(d: &Daemon, id: &str, name: &str) -> String {
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

/// What each action does from each state (docs/design.md, "The state
/// table"): the state it leads to, or None where it must answer 409 and
/// change nothing.
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
                // The state allows it, but this daemon has no backup
                // target: not offered, and refused naming what is missing.
                assert_eq!(
                    (status, body["code"].as_str()),
                    (409, Some("ActionNotAvailable")),
                    "{body}"
                );
                assert!(body["message"].as_str().unwrap().contains("[[backup_target]]"), "{body}");
                assert!(!listed, "restorefrombackup without a target is in `actions`: {before}");
                continue;
            }
            match expected(state, action) {
                Some(to) => {
                    assert!(
                        status == 200 || status == 202,
                        "{action} from {state}: {status} {body}"
                    );
                    // Deallocate without a backup runs only with the
                    // `force` given here: without input it is refused,
                    // so it is not offered.
                    let forced = (state, action) == ("inactive", "deallocate");
                    assert!(
                        listed != forced,
                        "{action} from {state}: `actions` says otherwise: {before}"
                    );
                    let after = d.settle(&path);
                    assert_eq!(after["state"], to, "{action} from {state}");
                    assert_eq!(after["transitioning"], "no", "{action} from {state}: {after}");
                }
                None => {
                    assert_eq!(status, 409, "{action} from {state} should be refused: {body}");
                    assert_eq!(body["code"], "ActionNotAvailable", "{body}");
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

/// Whether `action` is in the `actions` map of the resource at `path`.
fn offered(d: &Daemon, path: &str, action: &str) -> bool {
    d.admin_ok("GET", path, Value::Null, 200)["actions"].get(action).is_some()
}

/// A call of `action` with no body on the resource at `path`: refused as
/// not available when it is not offered, carried out when it is.
fn bare(d: &Daemon, path: &str, action: &str) -> (u16, Value) {
    let listed = offered(d, path, action);
    let (status, body) = d.admin("POST", &format!("{path}?action={action}"), Value::Null);
    if listed {
        assert!(status == 200 || status == 202, "{action} is offered but refused: {body}");
    } else {
        assert_eq!((status, body["code"].as_str()), (409, Some("ActionNotAvailable")), "{body}");
    }
    (status, body)
}

#[test]
fn an_action_is_offered_exactly_when_a_call_without_input_runs() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = crate::backup::repo_in(dir.path());
    let d = Daemon::private_with("admin-offers", &crate::backup::target("nas", &repo, &key, ""));

    // Deallocate without a backup of the latest data needs `force`.
    let id = volume_in(&d, "offer-cold", "inactive");
    let path = format!("/v1/volumes/{id}");
    assert!(!offered(&d, &path, "deallocate"), "deallocate offered with no backup");
    let (_, body) = bare(&d, &path, "deallocate");
    assert!(body["message"].as_str().unwrap().contains("force"), "{body}");
    // With a backup newer than the last write, a bare call does it.
    let b = d.admin_ok("POST", "/v1/backups", json!({ "volumeId": id }), 202);
    let backup = format!("/v1/backups/{}", b["id"].as_str().unwrap());
    assert_eq!(d.settle(&backup)["state"], "created");
    assert!(offered(&d, &path, "deallocate"), "deallocate not offered after a backup");
    assert_eq!(bare(&d, &path, "deallocate").1["state"], "requested");
    // That backup holds the volume's data now: not removable.
    assert!(!offered(&d, &backup, "remove"), "the archive's remove is offered");
    bare(&d, &backup, "remove");

    // A backup restored under the name it was taken from, while a live
    // volume has that name, needs a new `name`.
    assert!(!offered(&d, &backup, "restore"), "restore offered while the name is taken");
    let (_, body) = bare(&d, &backup, "restore");
    assert!(body["message"].as_str().unwrap().contains("offer-cold"), "{body}");
    let restored = d.admin_ok(
        "POST",
        &format!("{backup}?action=restore"),
        json!({ "name": "offer-copy" }),
        202,
    );
    d.settle(&format!("/v1/volumes/{}", restored["id"].as_str().unwrap()));
    assert!(offered(&d, &backup, "verify"));
    bare(&d, &backup, "verify");

    // A volume in the trash whose name a new volume took needs a new
    // `name` to come back.
    let gone = volume_in(&d, "offer-trash", "removed");
    let gone = format!("/v1/volumes/{gone}");
    d.admin_ok("POST", "/v1/volumes", json!({ "name": "offer-trash" }), 201);
    assert!(!offered(&d, &gone, "restore"), "restore offered while the name is taken");
    bare(&d, &gone, "restore");
    let back =
        d.admin_ok("POST", &format!("{gone}?action=restore"), json!({ "name": "offer-back" }), 200);
    assert_eq!((&back["name"], &back["state"]), (&json!("offer-back"), &json!("inactive")));
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

    // The name is free at once; restoring then needs another name (and
    // without one, `restore` is not offered).
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db"}"#);
    let (status, body) =
        d.admin("POST", &format!("/v1/volumes/{old_id}?action=restore"), Value::Null);
    assert_eq!((status, body["code"].as_str()), (409, Some("ActionNotAvailable")), "{body}");
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
