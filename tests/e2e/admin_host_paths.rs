//! Host-path volumes: confined to host_path_roots, snapshots and revert,
//! never deleted, refused without roots, and a vanished host path.

use serde_json::{Value, json};

use crate::admin_actions::snapshot_of;
use crate::harness::{Daemon, root_or_skip};

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
