//! Ways out of a pool or a host-path root planted after a volume was
//! made: every one is refused, and nothing outside is read or changed.

use serde_json::json;

use crate::harness::{Daemon, root_or_skip};

#[test]
fn a_host_path_swapped_for_a_symlink_leads_nowhere_outside_its_root() {
    if !root_or_skip() {
        return;
    }
    let hosts = tempfile::tempdir().unwrap();
    let roots = hosts.path().join("srv");
    let site = roots.join("team/site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), b"hello").unwrap();
    let outside = hosts.path().join("etc");
    std::fs::create_dir_all(outside.join("site")).unwrap();
    std::fs::write(outside.join("site/passwd"), b"root:x:0:0").unwrap();
    let config = format!("host_path_roots = [\"{}\"]\n", roots.display());
    let d = Daemon::private_with("escape-hostpath", &config);
    d.call_ok(
        "VolumeDriver.Create",
        &json!({ "Name": "web", "Opts": { "path": site } }).to_string(),
    );
    let id = d.id_of("web");
    let snap = d.snapshot(&id, "s");

    // Someone with write access inside the root swaps `team` for a
    // symlink to a directory outside it.
    std::fs::rename(roots.join("team"), hosts.path().join("team-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, roots.join("team")).unwrap();

    let err = d.call_err("VolumeDriver.Mount", r#"{"Name":"web","ID":"c1"}"#);
    assert!(err.contains("without symlinks"), "{err}");
    let (status, v) = d.admin(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": snap }),
    );
    if status == 202 {
        let v = d.settle(&format!("/v1/volumes/{id}"));
        assert_eq!(v["transitioning"], "error", "{v}");
    } else {
        assert!(v["message"].as_str().unwrap_or("").contains("without symlinks"), "{v}");
    }
    let (status, v) =
        d.admin("POST", &format!("/v1/volumes/{id}?action=snapshot"), json!({ "name": "t" }));
    if status == 202 {
        let s = d.settle(&format!("/v1/snapshots/{}", v["id"].as_str().unwrap()));
        assert_eq!(s["state"], "error", "nothing outside is copied: {s}");
    }
    let mut seen: Vec<_> =
        std::fs::read_dir(outside.join("site")).unwrap().map(|e| e.unwrap().file_name()).collect();
    seen.sort();
    assert_eq!(seen, ["passwd"], "nothing written beside the outside directory's files");
    assert_eq!(std::fs::read(outside.join("site/passwd")).unwrap(), b"root:x:0:0");
    let mut beside: Vec<_> =
        std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    beside.sort();
    assert_eq!(beside, ["site"], "no work directory made outside the root");

    // Put back, it works again.
    std::fs::remove_file(roots.join("team")).unwrap();
    std::fs::rename(hosts.path().join("team-moved"), roots.join("team")).unwrap();
    let v = d.call_ok("VolumeDriver.Mount", r#"{"Name":"web","ID":"c1"}"#);
    assert_eq!(v["Mountpoint"], site.to_str().unwrap());
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"web","ID":"c1"}"#);
}

#[test]
fn a_restore_never_gives_one_host_directory_two_volumes() {
    if !root_or_skip() {
        return;
    }
    let hosts = tempfile::tempdir().unwrap();
    let roots = hosts.path().join("srv");
    let site = roots.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let config = format!("host_path_roots = [\"{}\"]\n", roots.display());
    let d = Daemon::private_with("escape-hostpath-twice", &config);
    let create = |name: &str| {
        d.call_ok(
            "VolumeDriver.Create",
            &json!({ "Name": name, "Opts": { "path": site } }).to_string(),
        )
    };
    create("first");
    let first = d.id_of("first");
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"first"}"#);
    create("second");
    let (status, v) = d.admin("POST", &format!("/v1/volumes/{first}?action=restore"), json!({}));
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("already is that directory"), "{v}");
    assert_eq!(d.names(), ["second"]);
}
