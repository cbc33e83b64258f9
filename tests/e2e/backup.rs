//! Backups to restic repositories, end to end: the CLI and the admin API
//! of a real daemon, Debian's `restic` reading what ballast wrote, and a
//! second host restoring the first one's backups.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Daemon, root_or_skip, skip};

use ballast_test_support::s3server::{ACCESS_KEY, S3Server, SECRET_KEY};

/// A `file://` target `name` at `repo` whose password is in `key`.
pub(crate) fn target(name: &str, repo: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[[backup_target]]\nname = \"{name}\"\nurl = \"file://{}\"\npassword_file = \"{}\"\n{extra}",
        repo.display(),
        key.display()
    )
}

/// A repository directory and its password file, in `dir`.
pub(crate) fn repo_in(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("repo.key");
    std::fs::write(&key, "correct horse battery staple\n").unwrap();
    (dir.join("repo"), key)
}

/// Activates volume `name` and returns where its files are.
pub(crate) fn files_of(d: &Daemon, name: &str) -> PathBuf {
    let v = d.admin_ok("POST", &format!("/v1/volumes/{name}?action=activate"), Value::Null, 200);
    let uri = v["uri"].as_str().unwrap();
    PathBuf::from(&uri[uri.find("://").unwrap() + 3..])
}

pub(crate) fn deactivate(d: &Daemon, name: &str) {
    d.admin_ok("POST", &format!("/v1/volumes/{name}?action=deactivate"), Value::Null, 200);
}

/// Writes a small tree of every kind of file into `dir`.
pub(crate) fn write_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc/deep/er")).unwrap();
    std::fs::write(dir.join("etc/deep/er/conf"), b"key = value\n").unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    let big: Vec<u8> =
        (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    std::fs::write(dir.join("secret"), b"s3cr3t").unwrap();
    std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(dir.join("secret"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("etc/deep/er/conf", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere", dir.join("dangling")).unwrap();
}

/// Every path under `dir` with its kind, mode, owner and content (or
/// link target), sorted: two trees are equal when these are.
pub(crate) fn describe(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let full = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&full).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&full).unwrap().display())
        } else if meta.is_dir() {
            for e in std::fs::read_dir(&full).unwrap() {
                let name = e.unwrap().file_name();
                if rel.as_os_str().is_empty() && name == "lost+found" {
                    continue;
                }
                todo.push(rel.join(name));
            }
            "dir".into()
        } else {
            let bytes = std::fs::read(&full).unwrap();
            format!(
                "file {} {:x}",
                bytes.len(),
                bytes.iter().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b))
            )
        };
        let mode = meta.mode() & 0o7777;
        let mode = if meta.file_type().is_symlink() { 0 } else { mode };
        out.push(format!("{} {what} {mode:o} {}:{}", rel.display(), meta.uid(), meta.gid()));
    }
    out.sort();
    out
}

/// Takes a backup through the CLI; returns the backup resource.
pub(crate) fn backup(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json", "backup", "create"];
    all.extend_from_slice(args);
    let out = d.cli_ok(&all);
    let b: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(b["state"], "created", "{b}");
    b
}

/// Debian's restic, or a failure under CI.
fn restic() -> Option<&'static str> {
    if Command::new("restic").arg("version").output().is_ok_and(|o| o.status.success()) {
        return Some("restic");
    }
    skip("restic is not installed (apt-get install restic)");
    None
}

#[test]
fn a_volume_is_backed_up_restored_and_read_back_by_restic() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::private_with("backup-roundtrip", &target("nas", &repo, &key, ""));
    d.cli_ok(&["volume", "create", "db", "-o", "uid=70", "-o", "mode=0750"]);
    let files = files_of(&d, "db");
    write_tree(&files);
    let original = describe(&files);
    deactivate(&d, "db");

    let first = backup(&d, &["db"]);
    assert_eq!(first["volumeName"], "db");
    assert!(first["storedBytes"].as_u64().unwrap() > 0, "{first}");
    assert!(first["sizeBytes"].as_u64().unwrap() >= 3_000_000, "{first}");
    // The snapshot taken for it is gone again.
    assert_eq!(d.admin_ok("GET", "/v1/snapshots", Value::Null, 200)["data"], json!([]));
    let listed = d.cli_ok(&["backup", "ls", "db"]);
    assert!(listed.contains(first["id"].as_str().unwrap()), "{listed}");

    // Into a new volume: the same tree, root owner and mode included.
    d.cli_ok(&["backup", "restore", first["id"].as_str().unwrap(), "--name", "copy"]);
    let copy = files_of(&d, "copy");
    assert_eq!(describe(&copy), original);
    let root = std::fs::metadata(&copy).unwrap();
    assert_eq!((root.mode() & 0o7777, root.uid()), (0o750, 70));
    deactivate(&d, "copy");

    // In place: the volume's content becomes the backup's again.
    let files = files_of(&d, "db");
    std::fs::remove_file(files.join("big.bin")).unwrap();
    std::fs::write(files.join("new"), b"after the backup").unwrap();
    deactivate(&d, "db");
    d.cli_ok(&["backup", "restore", first["id"].as_str().unwrap(), "--into", "db"]);
    let files = files_of(&d, "db");
    assert_eq!(describe(&files), original);

    // Incremental: after a small change, the next backup stores little.
    std::fs::write(files.join("etc/deep/er/conf"), b"key = other\n").unwrap();
    deactivate(&d, "db");
    let second = backup(&d, &["db"]);
    let (one, two) =
        (first["storedBytes"].as_u64().unwrap(), second["storedBytes"].as_u64().unwrap());
    assert!(two * 20 < one, "the second backup stored {two} bytes, the first {one}");

    // The stock restic tool lists and restores what ballast wrote.
    let Some(restic) = restic() else { return };
    let out = Command::new(restic)
        .args(["-r", repo.to_str().unwrap(), "--password-file", key.to_str().unwrap()])
        .args(["snapshots", "--json", "--tag", "ballast"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    assert!(snaps[0]["tags"].as_array().unwrap().contains(&json!("volume=db")), "{snaps}");
    let out_dir = dir.path().join("by-restic");
    let out = Command::new(restic)
        .args(["-r", repo.to_str().unwrap(), "--password-file", key.to_str().unwrap()])
        .args(["restore", first["resticId"].as_str().unwrap(), "--target"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = describe(&out_dir);
    // restic's own restore does not carry the root's mode: compare the rest.
    assert_eq!(restored[1..], original[1..]);

    // Removal forgets it in the repository too.
    d.cli_ok(&["backup", "rm", first["id"].as_str().unwrap()]);
    let listed = d.cli_ok(&["backup", "ls"]);
    assert!(!listed.contains(first["id"].as_str().unwrap()), "{listed}");
    let out = Command::new(restic)
        .args(["-r", repo.to_str().unwrap(), "--password-file", key.to_str().unwrap()])
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    for name in ["db", "copy"] {
        d.cli_ok(&["volume", "rm", name]);
    }
}

#[test]
fn a_backup_of_a_named_snapshot_takes_the_volumes_own() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::private_with("backup-snap-name", &target("nas", &repo, &key, ""));
    // Both volumes have a snapshot named `nightly`: names are per volume.
    for vol in ["db", "web"] {
        d.cli_ok(&["volume", "create", vol]);
        std::fs::write(files_of(&d, vol).join("f"), vol).unwrap();
        deactivate(&d, vol);
        d.cli_ok(&["snapshot", "create", vol, "--name", "nightly"]);
    }
    let web = d.id_of("web");
    let snaps = d.admin_ok("GET", &format!("/v1/snapshots?volumeId={web}"), Value::Null, 200);
    let web_snap = snaps["data"][0]["id"].clone();
    let b = backup(&d, &["web", "--snapshot", "nightly"]);
    assert_eq!((&b["volumeName"], &b["snapshotId"]), (&json!("web"), &web_snap), "{b}");
    d.cli_ok(&["backup", "restore", b["id"].as_str().unwrap(), "--name", "copy"]);
    assert_eq!(std::fs::read_to_string(files_of(&d, "copy").join("f")).unwrap(), "web");
}

#[test]
fn a_second_host_lists_and_restores_the_first_hosts_backups() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let config = target("nas", &repo, &key, "");
    let first = Daemon::private_with("backup-host-a", &config);
    first.cli_ok(&["volume", "create", "site", "-o", "description=the web site"]);
    let files = files_of(&first, "site");
    write_tree(&files);
    let original = describe(&files);
    deactivate(&first, "site");
    let b = backup(&first, &["site"]);
    let short = &b["resticId"].as_str().unwrap()[..8];

    // A fresh state directory, the same target and password file.
    let second = Daemon::private_with("backup-host-b", &config);
    let listed = second.cli_ok(&["backup", "ls", "--target", "nas"]);
    assert!(listed.contains("site") && listed.contains(short), "{listed}");
    let found = second.admin_ok("GET", "/v1/backups?volumeName=site", Value::Null, 200);
    let found = &found["data"][0];
    assert_eq!(found["driverOpts"]["description"], "the web site", "{found}");
    assert_eq!(found["volumeId"], Value::Null, "not a volume of this host: {found}");

    // Docker's Create with the restic id, as another host would be told.
    let create = json!({ "Name": "site", "Opts": { "from-backup": short } }).to_string();
    second.call_ok("VolumeDriver.Create", &create);
    let v = second.settle("/v1/volumes/site");
    assert_eq!(v["transitioning"], "no", "{v}");
    assert_eq!(describe(&files_of(&second, "site")), original);
    deactivate(&second, "site");
    second.cli_ok(&["volume", "rm", "site"]);
    first.cli_ok(&["volume", "rm", "site"]);
}

/// The names in a resource's `actions` map.
fn actions(r: &Value) -> Vec<&str> {
    r["actions"].as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn backup_actions_are_offered_only_where_a_target_is_configured() {
    if !root_or_skip() {
        return;
    }
    // Without a target: neither the snapshot's `backup` nor the volume's
    // `restorefrombackup` is offered, and each, asked anyway, names the fix.
    let none = Daemon::private("backup-offer-none");
    let id = none.admin_ok("POST", "/v1/volumes", json!({ "name": "v" }), 201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let snap = none.snapshot(&id, "s");
    let s = none.admin_ok("GET", &format!("/v1/snapshots/{snap}"), Value::Null, 200);
    assert_eq!(actions(&s), ["remove"], "{s}");
    let v = none.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    assert!(!actions(&v).contains(&"restorefrombackup"), "{v}");
    for (path, body) in [
        (format!("/v1/snapshots/{snap}?action=backup"), json!({})),
        (format!("/v1/volumes/{id}?action=restorefrombackup"), json!({ "backupId": "1b1" })),
    ] {
        let (status, e) = none.admin("POST", &path, body);
        assert_eq!((status, e["code"].as_str()), (409, Some("ActionNotAvailable")), "{path}: {e}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("no backup target is configured"), "{path}: {e}");
        assert!(message.contains("add a [[backup_target]]"), "{path}: {e}");
    }
    assert_eq!(none.admin_ok("GET", "/v1/backups", Value::Null, 200)["data"], json!([]));

    // With one: both offered, and the snapshot's backs it up.
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::private_with("backup-offer", &target("nas", &repo, &key, ""));
    let id = d.admin_ok("POST", "/v1/volumes", json!({ "name": "v" }), 201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let snap = d.snapshot(&id, "s");
    let s = d.admin_ok("GET", &format!("/v1/snapshots/{snap}"), Value::Null, 200);
    assert_eq!(actions(&s), ["backup", "remove"], "{s}");
    let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    assert!(actions(&v).contains(&"restorefrombackup"), "{v}");
    let b = d.admin_ok("POST", &format!("/v1/snapshots/{snap}?action=backup"), json!({}), 202);
    let b = d.settle(&format!("/v1/backups/{}", b["id"].as_str().unwrap()));
    assert_eq!((b["state"].as_str(), b["snapshotId"].as_str()), (Some("created"), Some(&*snap)));
    // A restore makes a new volume: the same one asked again finds the
    // name taken, like a second POST to /v1/volumes.
    let restore = format!("/v1/backups/{}?action=restore", b["id"].as_str().unwrap());
    d.admin_ok("POST", &restore, json!({ "name": "copy" }), 202);
    let (status, e) = d.admin("POST", &restore, json!({ "name": "copy" }));
    assert_eq!((status, e["code"].as_str()), (409, Some("NotUnique")), "{e}");
    assert_eq!(d.settle("/v1/volumes/copy")["transitioning"], "no");
}

#[test]
fn a_backup_whose_target_left_the_config_offers_nothing_and_says_why() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    std::fs::create_dir(dir.path().join("other")).unwrap();
    let (other, other_key) = repo_in(&dir.path().join("other"));
    let both =
        format!("{}{}", target("nas", &repo, &key, ""), target("spare", &other, &other_key, ""));
    let mut d = Daemon::private_with("backup-target-gone", &both);
    d.cli_ok(&["volume", "create", "v"]);
    let b = backup(&d, &["v", "--target", "nas"]);
    let id = b["id"].as_str().unwrap().to_string();
    // `restore` without a name would take the name `v` has: offered only
    // once that name is free.
    assert_eq!(actions(&b), ["remove", "verify"], "{b}");
    d.cli_ok(&["volume", "rm", "v"]);
    let b = d.admin_ok("GET", &format!("/v1/backups/{id}"), Value::Null, 200);
    assert_eq!(actions(&b), ["remove", "restore", "verify"], "{b}");

    // The operator drops `nas` from the config: the backup is still
    // listed, but nothing is offered, and asking names the target.
    std::fs::write(d.dir.path().join("ballast.toml"), target("spare", &other, &other_key, ""))
        .unwrap();
    d.restart();
    let b = d.admin_ok("GET", &format!("/v1/backups/{id}"), Value::Null, 200);
    assert_eq!(actions(&b), Vec::<&str>::new(), "{b}");
    for action in ["verify", "restore", "remove"] {
        let (status, e) = d.admin("POST", &format!("/v1/backups/{id}?action={action}"), json!({}));
        assert_eq!((status, e["code"].as_str()), (409, Some("ActionNotAvailable")), "{e}");
        assert!(e["message"].as_str().unwrap().contains("target \"nas\", which is not configured"));
    }
}

#[test]
fn bad_targets_and_references_are_refused_with_reasons() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let none = Daemon::private("backup-none");
    none.cli_ok(&["volume", "create", "v"]);
    let (status, body) = none.admin("POST", "/v1/backups", json!({ "volumeId": "v" }));
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no backup target is configured"), "{body}");
    none.cli_ok(&["volume", "rm", "v"]);

    let d = Daemon::private_with("backup-bad", &target("nas", &repo, &key, ""));
    d.cli_ok(&["volume", "create", "v"]);
    let (status, body) =
        d.admin("POST", "/v1/backups", json!({ "volumeId": "v", "backupTargetId": "tape" }));
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("targets: nas"), "{body}");
    assert_eq!(
        (body["code"].as_str(), body["fieldName"].as_str()),
        (Some("InvalidReference"), Some("backupTargetId"))
    );
    let out = d.cli(&["volume", "create", "w", "-o", "from-backup=1b999"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from-backup") && err.contains("1b999"), "{err}");
    assert!(d.admin("GET", "/v1/volumes/w", Value::Null).0 == 404, "nothing was created");

    // A wrong password: the backup ends in error and says why; the daemon
    // keeps serving.
    let b = backup(&d, &["v"]);
    // A store that is not mounted (an empty directory where the repository
    // was): listing it fails and forgets nothing, and no repository is
    // made there.
    let away = dir.path().join("repo-away");
    std::fs::rename(&repo, &away).unwrap();
    std::fs::create_dir(&repo).unwrap();
    let out = d.cli(&["backup", "ls", "--target", "nas"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no repository") && err.contains("mounted"), "{err}");
    assert_eq!(std::fs::read_dir(&repo).unwrap().count(), 0, "a repository was made");
    std::fs::remove_dir(&repo).unwrap();
    std::fs::rename(&away, &repo).unwrap();
    let listed = d.cli_ok(&["backup", "ls", "--target", "nas"]);
    assert!(listed.contains(b["id"].as_str().unwrap()), "{listed}");
    std::fs::write(&key, "not the password\n").unwrap();
    let other = Daemon::private_with("backup-badkey", &target("nas", &repo, &key, ""));
    other.cli_ok(&["volume", "create", "v"]);
    let out = other.cli(&["backup", "create", "v"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("password"), "{err}");
    let out = other.cli(&["backup", "ls", "--target", "nas"]);
    assert!(!out.status.success());
    assert!(other.admin("GET", "/healthz", Value::Null).0 == 200);
    other.cli_ok(&["volume", "rm", "v"]);
    d.cli_ok(&["backup", "rm", b["id"].as_str().unwrap()]);
    d.cli_ok(&["volume", "rm", "v"]);
}

#[test]
fn an_s3_target_backs_up_and_another_host_restores_from_it() {
    if !root_or_skip() {
        return;
    }
    let Some(s3) = S3Server::start() else { return };
    s3.bucket("backups");
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = repo_in(dir.path());
    let config = format!(
        "[[backup_target]]\nname = \"s3\"\nurl = \"s3://backups/hosts/a\"\nendpoint = \"{}\"\n\
         region = \"us-east-1\"\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
         password_file = \"{}\"\n",
        s3.endpoint,
        key.display()
    );
    let first = Daemon::private_with("backup-s3-a", &config);
    first.cli_ok(&["volume", "create", "db"]);
    let files = files_of(&first, "db");
    write_tree(&files);
    let original = describe(&files);
    deactivate(&first, "db");
    let b = backup(&first, &["db"]);
    // The repository is in the bucket, under the prefix.
    assert!(s3.root().join("backups/hosts/a/config").exists(), "no repository in the bucket");
    // Credentials are never shown or logged.
    let targets = first.admin_ok("GET", "/v1/backuptargets", Value::Null, 200);
    assert!(!targets.to_string().contains(SECRET_KEY), "{targets}");
    assert!(!first.log().contains(SECRET_KEY), "the secret key is in the log");

    let second = Daemon::private_with("backup-s3-b", &config);
    second.cli_ok(&["backup", "ls", "--target", "s3"]);
    let short = &b["resticId"].as_str().unwrap()[..8];
    second.cli_ok(&["volume", "create", "db", "-o", &format!("from-backup={short}")]);
    let v = second.settle("/v1/volumes/db");
    assert_eq!(v["transitioning"], "no", "{v}");
    assert_eq!(describe(&files_of(&second, "db")), original);
    deactivate(&second, "db");

    // A store that cannot be reached: a clear error, the daemon serves on.
    drop(s3);
    second.cli_ok(&["volume", "create", "other"]);
    let out = second.cli(&["backup", "create", "other"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("S3 store"), "{err}");
    assert_eq!(second.admin("GET", "/healthz", Value::Null).0, 200);
    for name in ["db", "other"] {
        second.cli_ok(&["volume", "rm", name]);
    }
    first.cli_ok(&["volume", "rm", "db"]);
}
