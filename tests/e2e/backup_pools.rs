//! Restores across pools: into btrfs with the backed-up size, and into a
//! pool too small for the data (a clear error, nothing half-restored).

use serde_json::{Value, json};

use crate::backup::{backup, deactivate, describe, files_of, repo_in, target, write_tree};
use crate::harness::{Daemon, ScratchFs, Tmpfs, noise, root_or_skip};

#[test]
fn a_dir_volume_restores_into_a_btrfs_pool_with_its_size() {
    if !root_or_skip() {
        return;
    }
    let Some(fs) = ScratchFs::btrfs(512) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let config = format!(
        "{}[[pool]]\nname = \"fast\"\nbackend = \"btrfs\"\npath = \"{}\"\n\
         [[pool]]\nname = \"default\"\nbackend = \"dir\"\npath = \"{}\"\ndefault = true\n",
        target("nas", &repo, &key, ""),
        fs.mnt.join("ballast").display(),
        dir.path().join("default").display()
    );
    let d = Daemon::private_with("backup-btrfs", &config);
    d.cli_ok(&["volume", "create", "src"]);
    let files = files_of(&d, "src");
    write_tree(&files);
    let original = describe(&files);
    deactivate(&d, "src");
    let b = backup(&d, &["src"]);
    let id = b["id"].as_str().unwrap();
    d.cli_ok(&["backup", "restore", id, "--name", "fast-copy", "--pool", "fast"]);
    let v = d.admin_ok("GET", "/v1/volumes/fast-copy", Value::Null, 200);
    assert_eq!(v["storagePoolId"], "fast", "{v}");
    assert_eq!(describe(&files_of(&d, "fast-copy")), original);
    deactivate(&d, "fast-copy");
    // A sized btrfs volume's backup comes back with its size limit.
    d.cli_ok(&["volume", "create", "sized", "-o", "pool=fast", "-o", "size=32M"]);
    write_tree(&files_of(&d, "sized"));
    deactivate(&d, "sized");
    let sized = backup(&d, &["sized"]);
    d.cli_ok(&["backup", "restore", sized["id"].as_str().unwrap(), "--name", "sized2"]);
    let v = d.admin_ok("GET", "/v1/volumes/sized2", Value::Null, 200);
    assert_eq!((v["storagePoolId"].as_str(), v["sizeBytes"].as_u64()), (Some("default"), None));
    d.cli_ok(&[
        "backup",
        "restore",
        sized["id"].as_str().unwrap(),
        "--name",
        "sized3",
        "--pool",
        "fast",
    ]);
    let v = d.admin_ok("GET", "/v1/volumes/sized3", Value::Null, 200);
    assert_eq!(v["sizeBytes"], 32 << 20, "{v}");
    for name in ["src", "fast-copy", "sized", "sized2", "sized3"] {
        d.cli_ok(&["volume", "rm", name]);
    }
}

#[test]
fn a_restore_into_a_pool_too_small_fails_cleanly() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let small = Tmpfs::new(dir.path(), 48);
    let (repo, key) = repo_in(dir.path());
    let config = format!(
        "trash_retention = \"0s\"\n{}[[pool]]\nname = \"small\"\nbackend = \"dir\"\npath = \"{}\"\n\
         [[pool]]\nname = \"default\"\nbackend = \"dir\"\npath = \"{}\"\ndefault = true\n",
        target("nas", &repo, &key, ""),
        small.0.join("pool").display(),
        dir.path().join("default").display()
    );
    let d = Daemon::private_with("backup-full", &config);
    d.cli_ok(&["volume", "create", "big"]);
    let files = files_of(&d, "big");
    std::fs::write(files.join("a"), noise(1, 32 << 20)).unwrap();
    std::fs::write(files.join("b"), noise(2, 32 << 20)).unwrap();
    deactivate(&d, "big");
    let b = backup(&d, &["big"]);
    let id = b["id"].as_str().unwrap();

    // Into a new volume: the fill fails naming the disk, and the volume
    // never mounts.
    let out = d.cli(&["backup", "restore", id, "--name", "nope", "--pool", "small"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    let (status, body) = d.admin("POST", "/v1/volumes/nope?action=activate", Value::Null);
    assert_eq!(status, 409, "a half-restored volume could be used: {body}");
    d.cli_ok(&["volume", "rm", "nope"]);

    // In place: the volume keeps what it had.
    d.cli_ok(&["volume", "create", "keep", "-o", "pool=small"]);
    let kept = files_of(&d, "keep");
    std::fs::write(kept.join("mine"), b"still here").unwrap();
    let before = describe(&kept);
    deactivate(&d, "keep");
    let (status, body) =
        d.admin("POST", "/v1/volumes/keep?action=restorefrombackup", json!({ "backupId": id }));
    assert_eq!(status, 202, "{body}");
    let v = d.settle("/v1/volumes/keep");
    // Failed, and usable: the data is unchanged.
    assert_eq!(v["transitioning"], "no", "{v}");
    let message = v["transitioningMessage"].as_str().unwrap();
    assert!(message.contains("failed; the data is unchanged"), "{v}");
    assert!(message.contains("No space left"), "{v}");
    assert_eq!(describe(&files_of(&d, "keep")), before, "the volume changed");
    deactivate(&d, "keep");
    // Nothing of the failed restores is left taking the space.
    let used = std::fs::read_dir(small.0.join("pool/staging")).unwrap().count();
    assert_eq!(used, 0, "staging is not empty");
    assert_eq!(d.admin("GET", "/healthz", Value::Null).0, 200);
    for name in ["big", "keep"] {
        d.cli_ok(&["volume", "rm", name]);
    }
}
