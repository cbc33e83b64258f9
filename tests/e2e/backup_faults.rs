//! Backups when things go wrong or cross pools: tampered repositories,
//! restores between loop and dir pools, kill -9 during a backup and a
//! restore, SIGTERM while a backup waits on a silent store, retention,
//! and Docker seeing restored data.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backup::{backup, deactivate, describe, files_of, repo_in, target, write_tree};
use crate::docker::run;
use crate::harness::{Daemon, engine, noise, root_or_skip, wait_until};

/// Flips one byte in the middle of every pack file of the repository.
fn tamper(repo: &Path) -> usize {
    let mut n = 0;
    for sub in std::fs::read_dir(repo.join("data")).unwrap() {
        for pack in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let path = pack.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(&path, bytes).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn a_tampered_backup_fails_the_restore_and_leaves_the_volume_as_it_was() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::private_with("backup-tamper", &target("nas", &repo, &key, ""));
    d.cli_ok(&["volume", "create", "v"]);
    write_tree(&files_of(&d, "v"));
    deactivate(&d, "v");
    let b = backup(&d, &["v"]);
    let id = b["id"].as_str().unwrap();
    let files = files_of(&d, "v");
    std::fs::write(files.join("written-later"), b"keep me").unwrap();
    let before = describe(&files);
    deactivate(&d, "v");
    assert!(tamper(&repo) > 0);

    let out = d.cli(&["backup", "restore", id, "--into", "v"]);
    assert!(!out.status.success(), "a tampered restore succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(id), "the error names the backup: {err}");
    assert_eq!(describe(&files_of(&d, "v")), before, "the volume changed");
    deactivate(&d, "v");
    let out = d.cli(&["backup", "verify", id]);
    assert!(!out.status.success(), "verify passed a tampered backup");
    // A new volume from it fails too, and never becomes usable.
    let out = d.cli(&["backup", "restore", id, "--name", "w"]);
    assert!(!out.status.success());
    let (status, body) = d.admin("POST", "/v1/volumes/w?action=activate", Value::Null);
    assert_eq!(status, 409, "a half-restored volume could be used: {body}");
    assert!(d.admin("GET", "/healthz", Value::Null).0 == 200);
    for name in ["v", "w"] {
        d.cli_ok(&["volume", "rm", name]);
    }
}

#[test]
fn a_loop_volume_restores_into_a_dir_pool_and_back() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let pools = format!(
        "[[pool]]\nname = \"plain\"\nbackend = \"dir\"\npath = \"{}\"\ndefault = true\n\
         [[pool]]\nname = \"quota\"\nbackend = \"loop\"\npath = \"{}\"\ndefault_size = \"48M\"\n",
        dir.path().join("plain").display(),
        dir.path().join("quota").display()
    );
    let d =
        Daemon::private_with("backup-pools", &format!("{}{pools}", target("nas", &repo, &key, "")));
    d.cli_ok(&["volume", "create", "l", "-o", "pool=quota", "-o", "size=64M"]);
    let files = files_of(&d, "l");
    write_tree(&files);
    let original = describe(&files);
    // Backed up while mounted: the snapshot is read from a read-only mount.
    let from_loop = backup(&d, &["l"]);
    deactivate(&d, "l");

    d.cli_ok(&[
        "backup",
        "restore",
        from_loop["id"].as_str().unwrap(),
        "--name",
        "d",
        "--pool",
        "plain",
    ]);
    assert_eq!(describe(&files_of(&d, "d")), original);
    deactivate(&d, "d");
    // Back into the loop pool: the backed-up size follows.
    d.cli_ok(&[
        "backup",
        "restore",
        from_loop["id"].as_str().unwrap(),
        "--name",
        "l2",
        "--pool",
        "quota",
    ]);
    assert_eq!(d.admin_ok("GET", "/v1/volumes/l2", Value::Null, 200)["sizeBytes"], 64 << 20);
    assert_eq!(describe(&files_of(&d, "l2")), original);
    deactivate(&d, "l2");
    // A dir volume's backup into the loop pool takes the pool's default size.
    let from_dir = backup(&d, &["d"]);
    d.cli_ok(&[
        "backup",
        "restore",
        from_dir["id"].as_str().unwrap(),
        "--name",
        "l3",
        "--pool",
        "quota",
    ]);
    assert_eq!(d.admin_ok("GET", "/v1/volumes/l3", Value::Null, 200)["sizeBytes"], 48 << 20);
    assert_eq!(describe(&files_of(&d, "l3")), original);
    deactivate(&d, "l3");
    // No read-only mount of a snapshot is left behind.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/staging/read-"), "{mounts}");
    for name in ["l", "d", "l2", "l3"] {
        d.cli_ok(&["volume", "rm", name]);
    }
}

#[test]
fn kill_9_during_a_backup_and_a_restore_then_both_succeed() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let mut d = Daemon::private_with("backup-crash", &target("nas", &repo, &key, ""));
    d.cli_ok(&["volume", "create", "big"]);
    let files = files_of(&d, "big");
    // Enough incompressible data that the backup is still running when killed.
    for i in 0..4u64 {
        std::fs::write(files.join(format!("blob{i}")), noise(i, 24 << 20)).unwrap();
    }
    let original = describe(&files);
    deactivate(&d, "big");

    let b = d.admin_ok("POST", "/v1/backups", json!({ "volumeId": "big" }), 202);
    let path = format!("/v1/backups/{}", b["id"].as_str().unwrap());
    wait_until("the backup is reading", || {
        let b = d.admin_ok("GET", &path, Value::Null, 200);
        b["transitioningMessage"].as_str().unwrap_or("").starts_with("backing up")
    });
    d.kill9();
    d.start_again();
    let cut = d.admin_ok("GET", &path, Value::Null, 200);
    assert_eq!(cut["state"], "error", "{cut}");
    assert!(cut["transitioningMessage"].as_str().unwrap().contains("interrupted"), "{cut}");
    // The snapshot it had taken for itself is gone too.
    let snaps = d.admin_ok("GET", "/v1/snapshots", Value::Null, 200);
    assert_eq!(snaps["data"], json!([]), "{snaps}");
    let pool_snaps = d.state_dir().join("pools/default/snapshots");
    assert_eq!(std::fs::read_dir(&pool_snaps).unwrap().count(), 0);
    // Taken again, it completes, and no half-backup shows in the target.
    let whole = backup(&d, &["big"]);
    let listed = d.admin_ok("POST", "/v1/backuptargets/nas?action=sync", Value::Null, 200);
    assert_eq!(listed["imported"], 0, "a half-written backup was found: {listed}");

    d.admin_ok(
        "POST",
        &format!("/v1/backups/{}?action=restore", whole["id"].as_str().unwrap()),
        json!({ "name": "again" }),
        202,
    );
    wait_until("the restore is writing", || {
        let v = d.admin_ok("GET", "/v1/volumes/again", Value::Null, 200);
        v["transitioningMessage"].as_str().unwrap_or("").contains("restoring")
    });
    d.kill9();
    d.start_again();
    // Not usable until whole; then whole.
    let v = d.settle("/v1/volumes/again");
    assert_eq!(v["transitioning"], "no", "{v}");
    assert_eq!(describe(&files_of(&d, "again")), original);
    deactivate(&d, "again");
    for name in ["big", "again"] {
        d.cli_ok(&["volume", "rm", name]);
    }
}

#[test]
fn kill_9_during_a_restore_into_a_deallocated_volume_leaves_no_storage_behind() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let mut d = Daemon::private_with("restore-crash", &target("nas", &repo, &key, ""));
    d.cli_ok(&["volume", "create", "cold"]);
    let files = files_of(&d, "cold");
    for i in 0..4u64 {
        std::fs::write(files.join(format!("blob{i}")), noise(i, 24 << 20)).unwrap();
    }
    deactivate(&d, "cold");
    let b = backup(&d, &["cold"]);
    d.admin_ok("POST", "/v1/volumes/cold?action=deallocate", Value::Null, 200);
    let storage = d.state_dir().join("pools/default/volumes/v1");
    assert!(!storage.exists());

    let body = json!({ "backupId": b["id"] });
    d.admin_ok("POST", "/v1/volumes/cold?action=restorefrombackup", body, 202);
    wait_until("the restore is writing", || {
        let v = d.admin_ok("GET", "/v1/volumes/cold", Value::Null, 200);
        v["transitioningMessage"].as_str().unwrap_or("").contains("MiB")
    });
    d.kill9();
    d.start_again();
    let v = d.admin_ok("GET", "/v1/volumes/cold", Value::Null, 200);
    assert_eq!(v["state"], "requested", "{v}");
    assert!(v["transitioningMessage"].as_str().unwrap().contains("interrupted"), "{v}");
    // A requested volume has no storage: nothing of the cut restore stays.
    assert!(!storage.exists(), "the cut restore's storage is left");
    let pool = d.state_dir().join("pools/default");
    assert_eq!(std::fs::read_dir(pool.join("staging")).unwrap().count(), 0);
    d.cli_ok(&["volume", "rm", "cold"]);
}

#[test]
fn retention_keeps_the_newest_backups_of_each_volume() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::private_with("backup-keep", &target("nas", &repo, &key, "keep_last = 2\n"));
    d.cli_ok(&["volume", "create", "a"]);
    d.cli_ok(&["volume", "create", "b"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        std::fs::write(files_of(&d, "a").join("n"), format!("{i}")).unwrap();
        deactivate(&d, "a");
        ids.push(backup(&d, &["a"])["id"].as_str().unwrap().to_string());
    }
    let only_b = backup(&d, &["b"]);
    let all = d.admin_ok("GET", "/v1/backups", Value::Null, 200);
    let mut kept: Vec<&str> =
        all["data"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    kept.sort();
    let mut want = vec![ids[1].as_str(), ids[2].as_str(), only_b["id"].as_str().unwrap()];
    want.sort();
    assert_eq!(kept, want, "keep_last = 2 per volume");
    // The repository agrees.
    let synced = d.admin_ok("POST", "/v1/backuptargets/nas?action=sync", Value::Null, 200);
    assert_eq!(synced["imported"], 0);
    assert_eq!(
        d.admin_ok("GET", "/v1/backups", Value::Null, 200)["data"].as_array().unwrap().len(),
        3
    );
    for name in ["a", "b"] {
        d.cli_ok(&["volume", "rm", name]);
    }
}

#[test]
fn docker_runs_a_container_on_a_volume_restored_from_a_backup() {
    let Some(e) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::for_docker_with("ballast-e2e-backup", e, Some(&target("nas", &repo, &key, "")));
    e.ok(&["volume", "create", "--driver", &d.driver, "orig"]);
    run(
        e,
        "orig",
        "echo 'from the first container' > /data/note && mkdir /data/sub && echo x > /data/sub/y",
    );
    let b = backup(&d, &["orig"]);
    let create = ["volume", "create", "--driver", &d.driver, "-o"];
    let opt = format!("from-backup={}", b["id"].as_str().unwrap());
    let mut args = create.to_vec();
    args.extend([opt.as_str(), "restored"]);
    e.ok(&args);
    d.settle("/v1/volumes/restored");
    let out = run(e, "restored", "cat /data/note /data/sub/y");
    assert_eq!(out.trim_end(), "from the first container\nx");
    e.ok(&["volume", "rm", "orig", "restored"]);
}

#[test]
fn deallocate_needs_a_fresh_backup_and_the_next_mount_restores_it() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let d = Daemon::private_with("backup-cold", &target("nas", &repo, &key, ""));
    d.cli_ok(&["volume", "create", "cold"]);
    write_tree(&files_of(&d, "cold"));
    deactivate(&d, "cold");
    let dealloc = "/v1/volumes/cold?action=deallocate";
    let (status, body) = d.admin("POST", dealloc, Value::Null);
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no backup newer"), "{body}");
    backup(&d, &["cold"]);
    // Written after the backup: the backup no longer holds the data.
    let files = files_of(&d, "cold");
    std::fs::write(files.join("late"), b"written after the backup").unwrap();
    let original = describe(&files);
    deactivate(&d, "cold");
    assert_eq!(d.admin("POST", dealloc, Value::Null).0, 409);
    backup(&d, &["cold"]);
    let v = d.admin_ok("POST", dealloc, Value::Null, 200);
    assert_eq!(v["state"], "requested", "{v}");
    assert!(!files.exists() || std::fs::read_dir(&files).unwrap().next().is_none());
    // The backup holding its data cannot be removed meanwhile.
    let newest = d.admin_ok("GET", "/v1/backups?volumeName=cold", Value::Null, 200);
    let newest =
        newest["data"].as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string();
    let (status, body) = d.admin("DELETE", &format!("/v1/backups/{newest}"), Value::Null);
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("deallocated volume"), "{body}");

    // Docker's Mount brings it back from the newest backup.
    let mount = json!({ "Name": "cold", "ID": "c1" }).to_string();
    let (status, answer) = d.call("VolumeDriver.Mount", &mount);
    assert_eq!(status, 200, "{answer}");
    let at = answer["Mountpoint"].as_str().unwrap();
    assert_eq!(describe(Path::new(at)), original);
    d.call_ok("VolumeDriver.Unmount", &mount);
    d.cli_ok(&["volume", "rm", "cold"]);
}

#[test]
fn schedules_take_snapshots_and_backups_and_trim_them() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, key) = repo_in(dir.path());
    let config = format!("trash_retention = \"10s\"\n{}", target("nas", &repo, &key, ""));
    let mut d = Daemon::private_with("backup-schedule", &config);
    // Set at create through driverOpts, as compose would.
    d.cli_ok(&["volume", "create", "s", "-o", "snapshot-every=1s", "-o", "snapshot-keep=2"]);
    let id = d.id_of("s");
    let autos = |d: &Daemon| -> Vec<String> {
        let all = d.admin_ok("GET", &format!("/v1/snapshots?volumeId={id}"), Value::Null, 200);
        let created = all["data"].as_array().unwrap().iter().filter(|s| s["state"] == "created");
        created.map(|s| s["id"].as_str().unwrap().to_string()).collect()
    };
    wait_until("two scheduled snapshots", || autos(&d).len() == 2);
    // More are taken, the oldest go: two stay (three for a moment while
    // a new one is in and the oldest not yet out).
    let first = autos(&d)[0].clone();
    wait_until("the oldest scheduled snapshot trimmed", || {
        let now = autos(&d);
        assert!(now.len() <= 3, "snapshot-keep=2 is exceeded: {now:?}");
        !now.contains(&first)
    });
    wait_until("two scheduled snapshots again", || autos(&d).len() == 2);

    // Changed later through the CLI: backups every 2 s, keep one; the
    // schedule survives a restart.
    d.cli_ok(&["volume", "schedule", "s", "--backup-every", "2s", "--backup-keep", "1"]);
    d.restart();
    let v = d.admin_ok("GET", "/v1/volumes/s", Value::Null, 200);
    assert_eq!(v["schedule"]["backupEvery"], "2s", "{v}");
    assert_eq!(v["schedule"]["snapshotEvery"], Value::Null, "{v}");
    let created = |d: &Daemon| {
        let all = d.admin_ok("GET", "/v1/backups?volumeName=s", Value::Null, 200);
        all["data"].as_array().unwrap().iter().filter(|b| b["state"] == "created").count()
    };
    wait_until("a scheduled backup", || created(&d) >= 1);
    let first =
        d.admin_ok("GET", "/v1/volumes/s", Value::Null, 200)["schedule"]["lastBackup"].clone();
    wait_until("a second scheduled backup", || {
        d.admin_ok("GET", "/v1/volumes/s", Value::Null, 200)["schedule"]["lastBackup"] != first
    });
    wait_until("retention to one backup", || created(&d) == 1);
    d.cli_ok(&["volume", "schedule", "s"]);
    assert_eq!(d.admin_ok("GET", "/v1/volumes/s", Value::Null, 200)["schedule"], Value::Null);
    let (status, body) = d.admin(
        "PUT",
        "/v1/volumes/s",
        json!({ "schedule": { "backupEvery": "1h", "backupTarget": "tape" } }),
    );
    assert_eq!(status, 422, "{body}");
    wait_until("the last scheduled backup to end", || {
        let all = d.admin_ok("GET", "/v1/backups", Value::Null, 200);
        all["data"].as_array().unwrap().iter().all(|b| b["state"] != "creating")
    });
    d.cli_ok(&["volume", "rm", "s"]);
}

/// A store on loopback that takes every connection and never answers;
/// how many connections it took so far.
fn silent_store() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        // Held open, unanswered, until the test process ends.
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (endpoint, taken)
}

#[test]
fn sigterm_stops_the_daemon_within_seconds_while_a_backup_waits_on_a_silent_store() {
    if !root_or_skip() {
        return;
    }
    let (endpoint, taken) = silent_store();
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = repo_in(dir.path());
    let config = format!(
        "[[backup_target]]\nname = \"silent\"\nurl = \"s3://backups/silent\"\n\
         endpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key = \"k\"\n\
         secret_key = \"s\"\npassword_file = \"{}\"\n",
        key.display()
    );
    let mut d = Daemon::private_with("backup-silent-store", &config);
    d.cli_ok(&["volume", "create", "waits"]);
    d.admin_ok("POST", "/v1/backups", json!({ "volumeId": "waits" }), 202);
    // The backup's job now waits on the store, which would keep it
    // waiting for more than a minute of timeouts and retries.
    wait_until("the backup asks the store", || taken.load(Ordering::SeqCst) > 0);
    let asked = Instant::now();
    assert!(d.terminate(), "the daemon stops cleanly");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
    // The next start says what happened to the backup.
    d.start_again();
    let backups = d.admin_ok("GET", "/v1/backups", Value::Null, 200);
    let cut = &backups["data"][0];
    assert_eq!(cut["state"], "error", "{cut}");
    assert!(cut["transitioningMessage"].as_str().unwrap().contains("interrupted"), "{cut}");
}
