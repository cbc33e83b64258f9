//! Races a hostile or merely busy client can start: two requests on one
//! volume, a job and a request, the janitor and a restore. Each test says
//! which outcome is allowed and checks that nothing else happened, also
//! after a restart.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Conn, Daemon, Tmpfs, root_or_skip, wait_until};

/// A dir volume with `n` × 100 files of `content`; returns its id and
/// mountpoint.
fn volume_with_files(d: &Daemon, name: &str, dirs: usize, content: &[u8]) -> (String, String) {
    d.call_ok("VolumeDriver.Create", &json!({ "Name": name }).to_string());
    let mp = d.get(name)["Mountpoint"].as_str().unwrap().to_string();
    fill(&mp, dirs, content);
    (d.id_of(name), mp)
}

fn fill(mp: &str, dirs: usize, content: &[u8]) {
    for i in 0..dirs {
        std::fs::create_dir_all(format!("{mp}/d{i}")).unwrap();
        for j in 0..100 {
            std::fs::write(format!("{mp}/d{i}/f{j}"), content).unwrap();
        }
    }
}

fn count_files(mp: &str, dirs: usize, content: &[u8]) -> usize {
    (0..dirs)
        .flat_map(|i| (0..100).map(move |j| format!("{mp}/d{i}/f{j}")))
        .filter(|p| std::fs::read(p).is_ok_and(|c| c == content))
        .count()
}

#[test]
fn two_docker_removes_of_one_name_both_succeed() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("race-remove");
    for round in 0..10 {
        let name = format!("twice{round}");
        d.call_ok("VolumeDriver.Create", &json!({ "Name": name }).to_string());
        let body = json!({ "Name": name }).to_string();
        let results: Vec<(u16, Value)> = std::thread::scope(|s| {
            let a = s.spawn(|| d.call("VolumeDriver.Remove", &body));
            let b = s.spawn(|| d.call("VolumeDriver.Remove", &body));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        for (status, v) in results {
            assert_eq!(status, 200, "round {round}: {v}");
        }
        assert!(!d.names().contains(&name));
    }
}

#[test]
fn simultaneous_admin_creates_of_one_name_make_one_volume() {
    if !root_or_skip() {
        return;
    }
    const N: usize = 16;
    let d = Daemon::private("race-create");
    for round in 0..4 {
        let name = format!("once{round}");
        // The same body every time: Docker's Create would take each as a
        // repeat, but each asks this API for a new volume.
        let body = json!({ "name": name, "driverOpts": { "mode": "0750" } }).to_string();
        let start = Barrier::new(N);
        let results: Vec<(u16, Value)> = std::thread::scope(|s| {
            let calls: Vec<_> = (0..N)
                .map(|_| {
                    s.spawn(|| {
                        let mut conn = Conn::new(&d.admin_socket);
                        start.wait();
                        let (status, _, text) = conn.request("POST", "/v1/volumes", &body);
                        (status, serde_json::from_str(&text).unwrap())
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let statuses: Vec<u16> = results.iter().map(|(status, _)| *status).collect();
        let created = statuses.iter().filter(|status| **status == 201).count();
        assert_eq!(created, 1, "round {round}: exactly one create wins: {statuses:?}");
        for (status, v) in results.iter().filter(|(status, _)| *status != 201) {
            assert_eq!(
                (*status, v["code"].as_str(), v["fieldName"].as_str()),
                (409, Some("NotUnique"), Some("name")),
                "round {round}: {v}"
            );
        }
        let listed = d.admin_ok("GET", &format!("/v1/volumes?name={name}"), Value::Null, 200);
        assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
        // Docker's Create of the volume that exists still succeeds.
        let docker = json!({ "Name": name, "Opts": { "mode": "0750" } }).to_string();
        d.call_ok("VolumeDriver.Create", &docker);
    }
    assert_eq!(d.names().len(), 4, "{:?}", d.names());
}

#[test]
fn restore_and_purge_of_one_volume_never_both_win() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private("race-restore");
    let mut outcomes = Vec::new();
    for round in 0..12 {
        let name = format!("r{round}");
        let (id, mp) = volume_with_files(&d, &name, 1, b"keep");
        d.call_ok("VolumeDriver.Remove", &json!({ "Name": name }).to_string());
        let new_name = format!("back{round}");
        let (restore, purge) = std::thread::scope(|s| {
            let r = s.spawn(|| {
                d.admin(
                    "POST",
                    &format!("/v1/volumes/{id}?action=restore"),
                    json!({ "name": new_name }),
                )
            });
            let p =
                s.spawn(|| d.admin("POST", &format!("/v1/volumes/{id}?action=purge"), json!({})));
            (r.join().unwrap(), p.join().unwrap())
        });
        assert!(
            (restore.0 == 200) != (purge.0 == 200),
            "exactly one wins: restore {restore:?}, purge {purge:?}"
        );
        outcomes.push((id, mp, new_name, restore.0 == 200));
    }
    eprintln!("restores won {} of {}", outcomes.iter().filter(|o| o.3).count(), outcomes.len());
    for restart in [false, true] {
        if restart {
            d.restart();
        }
        for (id, mp, new_name, restored) in &outcomes {
            let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
            if *restored {
                assert_eq!(v["state"], "inactive", "{v}");
                assert_eq!(count_files(mp, 1, b"keep"), 100, "restored data intact");
                assert!(d.names().contains(new_name));
            } else {
                assert_eq!(v["state"], "purged", "{v}");
                assert!(!std::path::Path::new(mp).exists(), "purged data is gone");
            }
        }
    }
}

#[test]
fn the_janitor_never_purges_a_volume_being_restored() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private_with("race-janitor", "trash_retention = \"1s\"\n");
    for round in 0..8 {
        let name = format!("j{round}");
        let (id, mp) = volume_with_files(&d, &name, 2, b"keep");
        d.call_ok("VolumeDriver.Remove", &json!({ "Name": name }).to_string());
        // Keep restoring until it works or the janitor has purged it: at
        // about one second both try at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        let restored = loop {
            std::thread::sleep(Duration::from_millis(900 + 20 * round));
            let (status, v) =
                d.admin("POST", &format!("/v1/volumes/{id}?action=restore"), json!({}));
            if status == 200 {
                break true;
            }
            if v["message"].as_str().unwrap_or("").contains("purged") {
                break false;
            }
            assert!(Instant::now() < deadline, "{v}");
        };
        let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
        if restored {
            assert_eq!(v["state"], "inactive", "a restore that answered 200 stands: {v}");
            assert_eq!(count_files(&mp, 2, b"keep"), 200, "and its data with it");
            d.call_ok("VolumeDriver.Remove", &json!({ "Name": name }).to_string());
        } else {
            assert_eq!(v["state"], "purged", "{v}");
        }
    }
}

#[test]
fn a_copy_of_a_volume_still_being_filled_is_refused() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("race-fill-chain");
    volume_with_files(&d, "src", 100, b"data");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"mid","Opts":{"from-volume":"src"}}"#);
    let err = d.call_err("VolumeDriver.Create", r#"{"Name":"end","Opts":{"from-volume":"mid"}}"#);
    assert!(err.contains("not settled"), "{err}");
    assert!(!d.names().contains(&"end".to_string()), "nothing created");
    // And while `src` is read, it cannot be taken away.
    let (status, v) = d.admin("POST", "/v1/volumes/src?action=remove", json!({}));
    if d.admin_ok("GET", "/v1/volumes/mid", Value::Null, 200)["transitioning"] == "yes" {
        assert_eq!(status, 409, "{v}");
    }
    assert_eq!(d.settle("/v1/volumes/mid")["transitioning"], "no");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"end","Opts":{"from-volume":"mid"}}"#);
    assert_eq!(d.settle("/v1/volumes/end")["transitioning"], "no");
    let mp = d.get("end")["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(count_files(&mp, 100, b"data"), 10_000);
}

#[test]
fn docker_calls_answer_while_a_revert_runs() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("race-revert-meta");
    let (id, mp) = volume_with_files(&d, "big", 100, b"old");
    let snap = d.snapshot(&id, "base");
    fill(&mp, 100, b"new");
    d.admin_ok(
        "POST",
        &format!("/v1/volumes/{id}?action=reverttosnapshot"),
        json!({ "snapshotId": snap }),
        202,
    );
    // Docker repeats Creates and Unmounts; each is answered at once, not
    // after the copy: the revert is still running when the answer comes.
    let mut answered_during = 0;
    loop {
        d.call_ok("VolumeDriver.Create", r#"{"Name":"big"}"#);
        d.call_ok("VolumeDriver.Unmount", r#"{"Name":"big","ID":"never-mounted"}"#);
        let (status, removed) = d.call("VolumeDriver.Remove", r#"{"Name":"big"}"#);
        let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
        if v["transitioning"] != "yes" {
            break;
        }
        // Still running after the answers: none of them waited for it.
        assert_ne!(status, 200, "a Remove during the revert must be refused");
        assert!(removed["Err"].as_str().unwrap().contains("busy"), "{removed}");
        answered_during += 1;
    }
    eprintln!("{answered_during} rounds of Docker calls answered during the revert");
    assert!(answered_during > 0, "no call was answered while the revert ran");
    assert_eq!(count_files(&mp, 100, b"old"), 10_000);
}

#[test]
fn an_update_of_a_removed_volume_touches_only_its_own_record() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("race-update");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db"}"#);
    let old = d.id_of("db");
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"db"}"#);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db"}"#);
    let live = d.admin_ok("GET", "/v1/volumes/db", Value::Null, 200);
    assert_ne!(live["id"], old);
    d.admin_ok("PUT", &format!("/v1/volumes/{old}"), json!({ "description": "old one" }), 200);
    assert_eq!(d.names(), ["db"], "the live volume is still listed");
    d.call_ok("VolumeDriver.Get", r#"{"Name":"db"}"#);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db"}"#);
    let after = d.admin_ok("GET", "/v1/volumes/db", Value::Null, 200);
    assert_eq!(after["id"], live["id"]);
    assert_eq!(after["description"], "", "{after}");
}

#[test]
fn parallel_sized_creates_never_overcommit_a_loop_pool() {
    if !root_or_skip() {
        return;
    }
    // A 96 MiB pool: at most six 16 MiB volumes fit.
    let disk = tempfile::tempdir().unwrap();
    let fs = Tmpfs::new(disk.path(), 96);
    let mnt = fs.0.clone();
    let config = format!(
        "trash_retention = \"0s\"\n[[pool]]\nname = \"small\"\nbackend = \"loop\"\npath = \"{}\"\n",
        mnt.join("pool").display()
    );
    let d = Daemon::private_with("race-capacity", &config);
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let d = &d;
                s.spawn(move || {
                    d.call(
                        "VolumeDriver.Create",
                        &json!({ "Name": format!("c{i}"), "Opts": { "size": "16M" } }).to_string(),
                    )
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let accepted = results.iter().filter(|(s, _)| *s == 200).count();
    for (status, v) in &results {
        if *status != 200 {
            assert!(v["Err"].as_str().unwrap().contains("cannot fit"), "{v}; all: {results:?}");
        }
    }
    eprintln!("accepted {accepted} of 12 creates of 16 MiB in a 96 MiB pool");
    assert!((1..=6).contains(&accepted), "accepted {accepted}: {results:?}");
    assert_eq!(d.names().len(), accepted, "{results:?}");
    // Under the filesystem's minimum: refused, naming it.
    let err = d.call_err("VolumeDriver.Create", r#"{"Name":"tiny","Opts":{"size":"64K"}}"#);
    assert!(err.contains("at least 1M"), "{err}");
    for name in d.names() {
        d.call_ok("VolumeDriver.Remove", &json!({ "Name": name }).to_string());
    }
    wait_until("the pool's images are gone", || {
        std::fs::read_dir(mnt.join("pool/images")).map(|e| e.count()).unwrap_or(0) == 0
    });
}

#[test]
fn a_volume_whose_snapshot_is_being_copied_cannot_be_removed_or_purged() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private_with("race-snap-lease", "trash_retention = \"0s\"\n");
    let (id, _) = volume_with_files(&d, "a", 30, b"snap");
    let snap = d.snapshot(&id, "s");
    d.call_ok(
        "VolumeDriver.Create",
        &json!({ "Name": "b", "Opts": { "from-snapshot": snap } }).to_string(),
    );
    // Removing `a` would purge it at once, its snapshots with it.
    let (status, v) = d.call("VolumeDriver.Remove", r#"{"Name":"a"}"#);
    let still_filling =
        d.admin_ok("GET", "/v1/volumes/b", Value::Null, 200)["transitioning"] == "yes";
    if still_filling {
        assert_ne!(status, 200, "refused while its snapshot is read: {v}");
        assert!(v["Err"].as_str().unwrap().contains("busy"), "{v}");
    }
    assert_eq!(d.settle("/v1/volumes/b")["transitioning"], "no");
    let mp = d.get("b")["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(count_files(&mp, 30, b"snap"), 3_000, "the copy is whole");
}

#[test]
fn a_client_that_hangs_up_mid_create_leaves_nothing_half_done() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("race-hangup");
    for i in 0..60 {
        // The request goes out whole; the answer is never read.
        let mut s = std::os::unix::net::UnixStream::connect(&d.plugin_socket).unwrap();
        let body = json!({ "Name": format!("gone{i}") }).to_string();
        use std::io::Write;
        write!(
            s,
            "POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_micros(200 * (i % 10)));
        drop(s);
    }
    // Every one either exists whole or not at all: a second Create of the
    // name succeeds either way and the volume is then usable.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..60 {
        let name = format!("gone{i}");
        d.call_ok("VolumeDriver.Create", &json!({ "Name": name }).to_string());
        let mp = d.call_ok("VolumeDriver.Mount", &json!({ "Name": name, "ID": "m" }).to_string());
        assert!(std::path::Path::new(mp["Mountpoint"].as_str().unwrap()).is_dir());
        d.call_ok("VolumeDriver.Unmount", &json!({ "Name": name, "ID": "m" }).to_string());
    }
    assert_eq!(d.names().len(), 60);
}

#[test]
fn a_second_daemon_on_a_live_state_directory_refuses_before_touching_it() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("race-second-daemon");
    // 200 MiB: the snapshot copies for a while on a pool without reflink,
    // and a reflinked one still stages its work.
    let (id, _) = volume_with_files(&d, "busy", 20, &vec![7u8; 100 << 10]);
    let path = format!("/v1/volumes/{id}?action=snapshot");
    let s = d.admin_ok("POST", &path, json!({ "name": "during" }), 202);
    let sid = s["id"].as_str().unwrap().to_string();

    // A second daemon on the same state directory and sockets: it used
    // to run start-up recovery (clearing the running snapshot's staging)
    // before finding the sockets taken.
    let other = tempfile::tempdir().unwrap();
    let state = d.state_dir();
    let flag = std::ffi::OsStr::new;
    let args = [
        flag("--state-dir"),
        state.as_os_str(),
        flag("--plugin-socket"),
        d.plugin_socket.as_os_str(),
        flag("--admin-socket"),
        d.admin_socket.as_os_str(),
    ];
    let refused = crate::harness::serve_must_fail(other.path(), &args, &[]);
    let pid = d.pid().unwrap();
    assert!(refused.contains(&format!("pid {pid}")), "{refused}");
    assert!(refused.contains("--state-dir"), "the refusal says what to do: {refused}");

    // The first daemon's snapshot was left alone and completes.
    let s = d.settle(&format!("/v1/snapshots/{sid}"));
    assert_eq!(s["state"], "created", "{s}");
    assert_eq!(d.names(), ["busy"]);
}
