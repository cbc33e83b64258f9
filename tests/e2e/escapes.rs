//! Ways out of a pool or a host-path root planted after a volume was
//! made: every one is refused, and nothing outside is read or changed.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::harness::{Daemon, root_or_skip};

/// A host-path root `srv` holding `team/site/index.html`, and beside it
/// `etc/<under>/passwd`, which nothing may reach.
fn site_and_outside(under: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let hosts = tempfile::tempdir().unwrap();
    let roots = hosts.path().join("srv");
    let site = roots.join("team/site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), b"hello").unwrap();
    let outside = hosts.path().join("etc");
    std::fs::create_dir_all(outside.join(under)).unwrap();
    std::fs::write(outside.join(under).join("passwd"), b"root:x:0:0").unwrap();
    (hosts, roots, site, outside)
}

#[test]
fn a_host_path_swapped_for_a_symlink_leads_nowhere_outside_its_root() {
    if !root_or_skip() {
        return;
    }
    let (hosts, roots, site, outside) = site_and_outside("site");
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
    let removed = d.admin_ok("GET", &format!("/v1/volumes/{first}"), Value::Null, 200);
    assert!(removed["actions"].get("restore").is_none(), "restore offered: {removed}");
    let (status, v) = d.admin("POST", &format!("/v1/volumes/{first}?action=restore"), json!({}));
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("already is that directory"), "{v}");
    assert_eq!(d.names(), ["second"]);
}

#[test]
fn an_exposed_mountpoint_never_leads_out_of_a_swapped_host_directory() {
    use crate::exposed::{Binds, detach, mounts_at};
    if !root_or_skip() {
        return;
    }
    let (hosts, roots, site, outside) = site_and_outside("");
    let root = hosts.path().join("mounts");
    let _binds = Binds(root.clone());
    let config = format!("host_path_roots = [\"{}\"]\n", roots.display());
    let mut d = Daemon::private_with_args(
        "escape-exposed",
        &config,
        &["--mount-root", root.to_str().unwrap()],
    );
    let mount = |d: &Daemon, name: &str, id: &str| {
        d.call("VolumeDriver.Mount", &json!({ "Name": name, "ID": id }).to_string())
    };
    for (name, path) in [("team", roots.join("team")), ("site", site.clone())] {
        d.call_ok(
            "VolumeDriver.Create",
            &json!({ "Name": name, "Opts": { "path": path } }).to_string(),
        );
    }
    let (_, team) = mount(&d, "team", "c1");
    let team = std::path::PathBuf::from(team["Mountpoint"].as_str().unwrap());
    let (_, inner) = mount(&d, "site", "c2");
    let inner = std::path::PathBuf::from(inner["Mountpoint"].as_str().unwrap());
    assert_eq!(std::fs::read(inner.join("index.html")).unwrap(), b"hello");

    // The container given `team` swaps `site`, a volume of its own, for a
    // symlink to a directory outside every root.
    std::fs::rename(team.join("site"), team.join("site-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, team.join("site")).unwrap();

    // Every Mount checks again: refused, the bind left as it was.
    let (status, v) = mount(&d, "site", "c3");
    assert_ne!(status, 200, "{v}");
    assert!(v["Err"].as_str().unwrap().contains("site"), "{v}");
    assert!(!inner.join("passwd").exists());
    assert_eq!(std::fs::read(inner.join("index.html")).unwrap(), b"hello");

    // Killed, its binds gone meanwhile: start-up makes `team`'s again but
    // not one through the symlink, and says why.
    d.kill9();
    for bind in [&team, &inner] {
        detach(bind);
    }
    d.start_again();
    assert_eq!(mounts_at(&team), 1);
    assert!(team.join("site-moved/index.html").exists());
    assert_eq!(mounts_at(&inner), 0, "{}", d.log());
    assert!(!inner.join("passwd").exists());
    assert!(d.log().contains("cannot expose the mountpoint"), "{}", d.log());
    assert_eq!(std::fs::read(outside.join("passwd")).unwrap(), b"root:x:0:0");

    // Put back, it is exposed again; the last Unmounts take both away.
    std::fs::remove_file(team.join("site")).unwrap();
    std::fs::rename(team.join("site-moved"), team.join("site")).unwrap();
    let (status, v) = mount(&d, "site", "c4");
    assert_eq!(status, 200, "{v}");
    assert_eq!(std::fs::read(inner.join("index.html")).unwrap(), b"hello");
    for (name, id) in [("site", "c2"), ("site", "c4"), ("team", "c1")] {
        d.call_ok("VolumeDriver.Unmount", &json!({ "Name": name, "ID": id }).to_string());
    }
    assert!(!team.exists() && !inner.exists());
}

/// Runs `cmd` as the host's `nobody`; whether it succeeded.
fn as_nobody(cmd: &[&str]) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(cmd)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_local_user_reads_nothing_of_a_pool_placed_with_path() {
    if !root_or_skip() {
        return;
    }
    let place = tempfile::tempdir().unwrap();
    // The operator's directory is open to all, as /srv usually is.
    std::fs::set_permissions(place.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let pool = place.path().join("pool");
    let config =
        format!("[[pool]]\nname = \"placed\"\nbackend = \"dir\"\npath = \"{}\"\n", pool.display());
    let mut d = Daemon::private_with("escape-nobody", &config);
    d.call_ok(
        "VolumeDriver.Create",
        &json!({ "Name": "secret", "Opts": { "pool": "placed" } }).to_string(),
    );
    let mp = d.get("secret")["Mountpoint"].as_str().unwrap().to_string();
    std::fs::write(format!("{mp}/key"), b"s3cret").unwrap();
    std::fs::set_permissions(
        format!("{mp}/key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    d.snapshot(&d.id_of("secret"), "copy");
    assert!(as_nobody(&["true"]), "setpriv cannot run as nobody here");
    let refused = |d: &Daemon, when: &str| {
        assert!(!as_nobody(&["cat", &format!("{mp}/key")]), "{when}: nobody read a volume's file");
        for inner in ["", "volumes", "snapshots", "staging", "trash"] {
            let dir = pool.join(inner);
            assert!(
                !as_nobody(&["ls", dir.to_str().unwrap()]),
                "{when}: nobody listed {}",
                dir.display()
            );
        }
        assert_eq!(d.get("secret")["Name"], "secret");
    };
    refused(&d, "a new pool");

    // A pool an older version made open to all is closed when it opens.
    d.terminate();
    for inner in ["", "volumes", "snapshots"] {
        std::fs::set_permissions(
            pool.join(inner),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    d.start_again();
    refused(&d, "an older pool");
}
