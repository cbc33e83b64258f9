//! The plugin socket spoken to exactly as Docker speaks: raw HTTP, no
//! Content-Type, empty and null bodies. No Docker engine needed.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Daemon, config_args, root_or_skip, serve_must_fail};

fn create(d: &Daemon, name: &str, opts: serde_json::Value) {
    d.call_ok("VolumeDriver.Create", &json!({ "Name": name, "Opts": opts }).to_string());
}

/// Waits until a volume's job (a fill) is over, as `docker volume inspect`
/// shows it.
fn settled(d: &Daemon, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = d.get(name);
        if v["Status"]["transitioning"] != "yes" {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} never settled: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pool_entries(d: &Daemon) -> usize {
    std::fs::read_dir(d.state_dir().join("pools/default/volumes")).unwrap().count()
}

#[test]
fn activate_with_empty_body_and_capabilities() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-activate");
    assert_eq!(d.call_ok("Plugin.Activate", ""), json!({ "Implements": ["VolumeDriver"] }));
    assert_eq!(
        d.call_ok("VolumeDriver.Capabilities", ""),
        json!({ "Capabilities": { "Scope": "local" } })
    );
    let (status, v) = d.call("VolumeDriver.Snapshot", "{}");
    assert_eq!(status, 404);
    assert!(v["Err"].as_str().unwrap().contains("unknown endpoint"));
}

#[test]
fn lifecycle_with_null_opts_get_before_create_and_idempotence() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-life");
    // Docker calls Get before Create.
    let err = d.call_err("VolumeDriver.Get", r#"{"Name":"db"}"#);
    assert!(err.contains("no volume named \"db\""), "{err}");
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db","Opts":null}"#);
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db","Opts":null}"#); // idempotent
    d.call_ok("VolumeDriver.Create", r#"{"Name":"db","Opts":{}}"#); // same options
    let err = d.call_err("VolumeDriver.Create", r#"{"Name":"db","Opts":{"mode":"0700"}}"#);
    assert!(err.contains("already exists with different options"), "{err}");

    let v = d.get("db");
    assert_eq!(v["Name"], "db");
    let created = v["CreatedAt"].as_str().unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("CreatedAt {created:?} is not RFC 3339: {e}"));
    assert_eq!(v["Status"]["state"], "inactive");
    assert_eq!(v["Status"]["pool"], "default");
    let mp = v["Mountpoint"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&mp).is_dir());
    assert_eq!(d.call_ok("VolumeDriver.Path", r#"{"Name":"db"}"#)["Mountpoint"], mp.as_str());
    assert_eq!(d.names(), vec!["db"]);

    d.call_ok("VolumeDriver.Remove", r#"{"Name":"db"}"#);
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"db"}"#); // idempotent
    assert!(d.names().is_empty());
    d.call_err("VolumeDriver.Get", r#"{"Name":"db"}"#);
    // The name is free again at once.
    create(&d, "db", json!({ "description": "second" }));
    assert_eq!(d.get("db")["Status"]["description"], "second");
}

#[test]
fn duplicate_mount_ids_are_counted_and_persisted() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private("proto-mounts");
    create(&d, "m", json!(null));
    let mount =
        |id: &str| d.call_ok("VolumeDriver.Mount", &json!({ "Name": "m", "ID": id }).to_string());
    let mp = mount("c1")["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(mount("c1")["Mountpoint"], mp.as_str());
    mount("c2");
    assert_eq!(d.get("m")["Status"]["mounts"], 3);
    assert_eq!(d.get("m")["Status"]["state"], "active");

    // The counts survive a restart.
    d.restart();
    assert_eq!(d.get("m")["Status"]["mounts"], 3);
    let unmount =
        |id: &str| d.call_ok("VolumeDriver.Unmount", &json!({ "Name": "m", "ID": id }).to_string());
    unmount("c1");
    unmount("nobody"); // unknown ID: not an error
    let err = d.call_err("VolumeDriver.Remove", r#"{"Name":"m"}"#);
    assert!(err.contains("in use") && err.contains("c1") && err.contains("c2"), "{err}");
    unmount("c1");
    assert_eq!(d.get("m")["Status"]["state"], "active", "c2 still holds it");
    unmount("c2");
    unmount("c2"); // idempotent
    assert_eq!(d.get("m")["Status"]["mounts"], 0);
    assert_eq!(d.get("m")["Status"]["state"], "inactive");
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"m"}"#);
}

#[test]
fn malformed_json_gets_a_json_error() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-malformed");
    for body in ["{", "[1,2]", r#"{"Name": 5}"#, r#"{"Name":"x","Opts":{"size":1}}"#] {
        let err = d.call_err("VolumeDriver.Create", body);
        assert!(err.contains("malformed request body"), "{body}: {err}");
    }
    assert!(d.names().is_empty());
}

#[test]
fn bad_names_and_options_are_refused_and_change_nothing() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-bad");
    let long = "x".repeat(300);
    for name in ["", "../x", "a/b", "..", "/etc", long.as_str(), "a\u{0}b", ".hidden"] {
        let err = d.call_err("VolumeDriver.Create", &json!({ "Name": name }).to_string());
        assert!(err.contains("invalid volume name"), "{name:?}: {err}");
        for method in ["Get", "Path", "Mount", "Unmount", "Remove"] {
            let err = d.call_err(
                &format!("VolumeDriver.{method}"),
                &json!({ "Name": name, "ID": "x" }).to_string(),
            );
            assert!(err.contains("invalid volume name"), "{method} {name:?}: {err}");
        }
    }
    let cases = [
        (json!({ "colour": "red" }), "unknown option \"colour\""),
        (
            json!({ "from_backup": "b" }),
            "valid options are: pool, size, fs, description, uid, gid, mode, from-volume, \
             from-snapshot, from-backup, path",
        ),
        (json!({ "pool": "nope" }), "option pool=\"nope\": no such pool; pools: default"),
        (
            json!({ "size": "1G" }),
            "cannot enforce a size limit; sizes are enforced by btrfs and loop pools",
        ),
        (json!({ "size": "huge" }), "option size=\"huge\" is invalid"),
        (json!({ "mode": "888" }), "option mode=\"888\" is invalid"),
        (json!({ "uid": "root" }), "option uid=\"root\" is invalid"),
        (
            json!({ "from-volume": "ghost" }),
            "option from-volume=\"ghost\": no volume with that name exists",
        ),
        (
            json!({ "from-snapshot": "1s999" }),
            "option from-snapshot=\"1s999\": no snapshot with id",
        ),
        (json!({ "from-snapshot": "a", "from-volume": "b" }), "cannot be combined"),
    ];
    for (opts, needle) in cases {
        let err =
            d.call_err("VolumeDriver.Create", &json!({ "Name": "ok", "Opts": opts }).to_string());
        assert!(err.contains(needle), "{opts}: {err}");
    }
    assert!(d.names().is_empty(), "nothing was created");
    assert_eq!(pool_entries(&d), 0, "no storage was made");
}

#[test]
fn owner_mode_and_from_volume_copy() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-copy");
    create(
        &d,
        "src",
        json!({ "uid": "1234", "gid": "4321", "mode": "0750", "description": "origin" }),
    );
    let src = d.get("src")["Mountpoint"].as_str().unwrap().to_string();
    let meta = std::fs::metadata(&src).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 4321, 0o750));
    std::fs::create_dir(format!("{src}/dir")).unwrap();
    std::fs::write(format!("{src}/dir/file"), b"payload").unwrap();
    std::os::unix::fs::symlink("dir/file", format!("{src}/link")).unwrap();

    create(&d, "copy", json!({ "from-volume": "src" }));
    assert_eq!(settled(&d, "copy")["Status"]["transitioning"], "no");
    let copy = d.get("copy")["Mountpoint"].as_str().unwrap().to_string();
    assert_ne!(copy, src);
    assert_eq!(std::fs::read(format!("{copy}/dir/file")).unwrap(), b"payload");
    assert_eq!(std::fs::read_link(format!("{copy}/link")).unwrap().to_str(), Some("dir/file"));
    let meta = std::fs::metadata(&copy).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 4321, 0o750));
    // A copy, not a link: changing one leaves the other.
    std::fs::write(format!("{copy}/dir/file"), b"changed").unwrap();
    assert_eq!(std::fs::read(format!("{src}/dir/file")).unwrap(), b"payload");
    assert!(d.get("copy")["Status"]["usedBytes"].as_u64().unwrap() > 0);
}

#[test]
fn remove_never_follows_symlinks_out_of_the_pool() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private_with("proto-symlink", "trash_retention = \"0s\"\n");
    create(&d, "evil", json!(null));
    let mp = d.get("evil")["Mountpoint"].as_str().unwrap().to_string();
    let outside = d.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, format!("{mp}/escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("keep"), format!("{mp}/file-escape")).unwrap();
    d.call_ok("VolumeDriver.Remove", r#"{"Name":"evil"}"#);
    assert!(!std::path::Path::new(&mp).exists(), "the volume's data is purged");
    assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"precious");
}

#[test]
fn remove_never_deletes_across_a_mount() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private_with("proto-xdev", "trash_retention = \"0s\"\n");
    create(&d, "mnt", json!(null));
    let mp = d.get("mnt")["Mountpoint"].as_str().unwrap().to_string();
    let outside = d.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"precious").unwrap();
    std::fs::create_dir(format!("{mp}/inner")).unwrap();
    let status = std::process::Command::new("mount")
        .args(["--bind", outside.to_str().unwrap(), &format!("{mp}/inner")])
        .status()
        .unwrap();
    assert!(status.success());
    let res = d.call("VolumeDriver.Remove", r#"{"Name":"mnt"}"#);
    let _ = std::process::Command::new("umount").arg(format!("{mp}/inner")).status();
    assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"precious", "{res:?}");
    assert!(d.log().contains("refusing to delete across a mount boundary"), "{}", d.log());
}

#[test]
fn a_copy_runs_as_a_job_that_get_and_list_never_wait_for() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-concurrent");
    create(&d, "big", json!(null));
    create(&d, "other", json!(null));
    let big = d.get("big")["Mountpoint"].as_str().unwrap().to_string();
    // Enough files that copying them takes a while (and, in a debug build
    // on a busy machine, well under the 25 s a Mount waits).
    for i in 0..100 {
        let dir = format!("{big}/d{i}");
        std::fs::create_dir(&dir).unwrap();
        for j in 0..100 {
            std::fs::write(format!("{dir}/f{j}"), b"data").unwrap();
        }
    }
    // The create answers at once; the copy runs as a job while Get and
    // List keep answering, and a Mount waits for the copy to finish.
    let t = Instant::now();
    create(&d, "clone", json!({ "from-volume": "big" }));
    let created = t.elapsed();
    let socket = d.plugin_socket.clone();
    let mount = std::thread::spawn(move || {
        crate::harness::call(&socket, "VolumeDriver.Mount", r#"{"Name":"clone","ID":"c"}"#)
    });
    let (mut answered_during, mut worst) = (0, Duration::ZERO);
    loop {
        let t = Instant::now();
        let v = d.get("clone");
        d.names();
        d.get("other");
        worst = worst.max(t.elapsed());
        if v["Status"]["transitioning"] != "yes" {
            break;
        }
        assert!(
            v["Status"]["transitioningMessage"]
                .as_str()
                .unwrap()
                .contains("filling from volume \"big\""),
            "{v}"
        );
        answered_during += 1;
    }
    let filled = t.elapsed();
    assert!(answered_during > 0, "the copy was not running after the create answered");
    assert!(created < filled, "the create ({created:?}) waited for the copy ({filled:?})");
    assert!(worst < filled / 2, "a Get/List waited {worst:?} during a {filled:?} copy");
    let (status, body) = mount.join().unwrap();
    assert_eq!(status, 200, "the mount waited for the copy: {body}");
    let clone = body["Mountpoint"].as_str().unwrap();
    assert_eq!(std::fs::read_dir(clone).unwrap().count(), 100, "the mount saw the whole copy");
    assert_eq!(std::fs::read_dir(format!("{clone}/d99")).unwrap().count(), 100);
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"clone","ID":"c"}"#);
    assert_eq!(d.names(), vec!["big", "clone", "other"]);
}

#[test]
fn sigterm_keeps_data_and_removes_sockets() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private("proto-sigterm");
    create(&d, "keep", json!(null));
    let mp = d.call_ok("VolumeDriver.Mount", r#"{"Name":"keep","ID":"c"}"#)["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(format!("{mp}/f"), b"still here").unwrap();
    assert!(d.terminate(), "clean exit");
    assert!(!d.plugin_socket.exists() && !d.admin_socket.exists(), "sockets removed");
    assert_eq!(std::fs::read(format!("{mp}/f")).unwrap(), b"still here");
    d.start_again();
    let v = d.get("keep");
    assert_eq!(
        (v["Status"]["state"].as_str(), v["Status"]["mounts"].as_u64()),
        (Some("active"), Some(1))
    );
    assert_eq!(v["Mountpoint"], mp.as_str(), "same mountpoint after restart");
    d.call_ok("VolumeDriver.Unmount", r#"{"Name":"keep","ID":"c"}"#);
}

#[test]
fn sockets_are_root_only_and_admin_answers_healthz() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-perms");
    for s in [&d.plugin_socket, &d.admin_socket] {
        assert_eq!(std::fs::metadata(s).unwrap().mode() & 0o777, 0o600, "{}", s.display());
    }
    let (status, _, body) =
        crate::harness::Conn::new(&d.admin_socket).request("GET", "/healthz", "");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("proto-twice");
    let socket = d.plugin_socket.clone().into_os_string();
    let err = serve_must_fail(
        &d.dir.path().join("second"),
        &["--plugin-socket".as_ref(), socket.as_ref()],
        &[],
    );
    assert!(err.contains("another daemon is already listening"), "{err}");
    d.call_ok("Plugin.Activate", ""); // the first one is unharmed
}

#[test]
fn a_bad_config_stops_start_up_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let args = config_args(dir.path(), "bad.toml", "[[pool]]\nname = \"p\"\nbackend = \"zfs\"\n");
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let err = serve_must_fail(dir.path(), &args, &[]);
    assert!(err.contains("bad.toml") && err.contains("backend") && err.contains("zfs"), "{err}");
    let missing = dir.path().join("missing.toml");
    let err = serve_must_fail(dir.path(), &["--config".as_ref(), missing.as_os_str()], &[]);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn a_global_pool_makes_the_driver_global() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[pool]]\nname = \"local\"\nbackend = \"dir\"\ndefault = true\n\
         [[pool]]\nname = \"shared\"\nbackend = \"dir\"\npath = \"{}\"\nscope = \"global\"\n",
        dir.path().join("shared").display()
    );
    let d = Daemon::private_with("proto-global", &config);
    assert_eq!(
        d.call_ok("VolumeDriver.Capabilities", ""),
        json!({ "Capabilities": { "Scope": "global" } })
    );
    create(&d, "here", json!(null));
    create(&d, "everywhere", json!({ "pool": "shared" }));
    let access = |name: &str| {
        d.admin_ok("GET", &format!("/v1/volumes/{name}"), serde_json::Value::Null, 200)["accessMode"].clone()
    };
    assert_eq!(access("here"), "singleHostRW");
    assert_eq!(access("everywhere"), "multiHostRW");
}
