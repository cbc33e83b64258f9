//! The `ballast` CLI against a running daemon: tables, `--json`, exit
//! codes, names and ids.

use serde_json::Value;

use crate::harness::{Daemon, root_or_skip};

#[test]
fn volume_commands_by_name_and_id() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("cli-volume");
    let out =
        d.cli_ok(&["volume", "create", "web", "-o", "description=front end", "-o", "mode=0750"]);
    assert!(out.starts_with("created web (1v"), "{out}");
    d.cli_ok(&["volume", "create", "spare", "--no-allocate"]);

    let table = d.cli_ok(&["volume", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATE") && lines[0].contains("POOL"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("web ") && l.contains("inactive") && l.contains("front end")),
        "{table}"
    );
    assert!(lines.iter().any(|l| l.starts_with("spare ") && l.contains("requested")), "{table}");

    let json: Value = serde_json::from_str(&d.cli_ok(&["volume", "ls", "--json"])).unwrap();
    let web = json.as_array().unwrap().iter().find(|v| v["name"] == "web").unwrap().clone();
    let id = web["id"].as_str().unwrap();
    let by_id: Value = serde_json::from_str(&d.cli_ok(&["volume", "inspect", id])).unwrap();
    let by_name: Value = serde_json::from_str(&d.cli_ok(&["volume", "inspect", "web"])).unwrap();
    assert_eq!(by_id, by_name);
    assert_eq!(by_name["driverOpts"]["mode"], "0750");

    d.cli_ok(&["volume", "activate", "web"]);
    d.cli_ok(&["volume", "deactivate", id]);
    d.cli_ok(&["volume", "allocate", "spare"]);
    let out = d.cli(&["volume", "deallocate", "spare"]);
    assert!(!out.status.success());
    d.cli_ok(&["volume", "deallocate", "spare", "--force"]);

    d.cli_ok(&["volume", "rm", "web"]);
    let trash = d.cli_ok(&["volume", "ls", "--removed"]);
    assert!(trash.lines().any(|l| l.starts_with("web ") && l.contains("removed")), "{trash}");
    assert!(!d.cli_ok(&["volume", "ls"]).lines().any(|l| l.starts_with("web ")));
    let out = d.cli_ok(&["volume", "restore", "web", "--name", "web2"]);
    assert!(out.contains("restored web2"), "{out}");
    d.cli_ok(&["volume", "rm", "web2"]);
    let out = d.cli_ok(&["volume", "purge", "web2"]);
    assert!(out.contains("purged"), "{out}");
}

#[test]
fn snapshot_commands_and_revert() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("cli-snapshot");
    d.cli_ok(&["volume", "create", "db"]);
    let mp = d.get("db")["Mountpoint"].as_str().unwrap().to_string();
    std::fs::write(format!("{mp}/table"), b"v1").unwrap();
    let out = d.cli_ok(&["snapshot", "create", "db", "--name", "before"]);
    assert!(out.contains("snapshot before") && out.contains("created"), "{out}");
    std::fs::write(format!("{mp}/table"), b"v2").unwrap();

    let list = d.cli_ok(&["snapshot", "ls", "db"]);
    assert!(list.lines().next().unwrap().starts_with("ID"), "{list}");
    assert!(list.lines().any(|l| l.contains("before") && l.contains("created")), "{list}");
    let out = d.cli_ok(&["snapshot", "revert", "db", "before"]);
    assert!(out.contains("reverted db to before"), "{out}");
    assert_eq!(std::fs::read(format!("{mp}/table")).unwrap(), b"v1");

    d.cli_ok(&["snapshot", "rm", "before"]);
    assert_eq!(d.cli_ok(&["snapshot", "ls"]).lines().count(), 1, "only the header is left");
    let pools = d.cli_ok(&["pool", "ls"]);
    assert!(
        pools.lines().any(|l| l.starts_with("default (default)") && l.contains("dir")),
        "{pools}"
    );
}

#[test]
fn snapshot_ls_names_each_snapshots_volume() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("cli-snapshot-names");
    d.cli_ok(&["volume", "create", "orders"]);
    d.cli_ok(&["snapshot", "create", "orders", "--name", "nightly"]);
    for args in [&["snapshot", "ls"][..], &["snapshot", "ls", "orders"]] {
        let table = d.cli_ok(args);
        let row = table.lines().find(|l| l.contains("nightly")).expect(&table);
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[2], "orders", "the VOLUME column names it:\n{table}");
    }
}

#[test]
fn removing_a_mounted_volume_says_how_to_find_its_containers() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("cli-in-use");
    d.cli_ok(&["volume", "create", "ledger"]);
    let (status, _) = d.call("VolumeDriver.Mount", r#"{"Name":"ledger","ID":"f00d"}"#);
    assert_eq!(status, 200);
    let out = d.cli(&["volume", "rm", "ledger"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("in use by 1 mount"), "{err}");
    assert!(err.contains("`docker ps -a --filter volume=ledger` names the containers"), "{err}");
    d.call("VolumeDriver.Unmount", r#"{"Name":"ledger","ID":"f00d"}"#);
}

/// Snapshot names are not unique across volumes (each volume may have
/// its own `before`): a revert, which names the volume, finds the name
/// among that volume's snapshots.
#[test]
fn a_revert_by_name_takes_the_volumes_own_snapshot() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("cli-revert-name");
    for vol in ["db", "web"] {
        d.cli_ok(&["volume", "create", vol]);
        let mp = d.get(vol)["Mountpoint"].as_str().unwrap().to_string();
        std::fs::write(format!("{mp}/f"), format!("{vol} v1")).unwrap();
        d.cli_ok(&["snapshot", "create", vol, "--name", "before"]);
        std::fs::write(format!("{mp}/f"), format!("{vol} v2")).unwrap();
    }
    for vol in ["web", "db"] {
        let out = d.cli_ok(&["snapshot", "revert", vol, "before"]);
        assert!(out.contains(&format!("reverted {vol} to before")), "{out}");
        let mp = d.get(vol)["Mountpoint"].as_str().unwrap().to_string();
        assert_eq!(std::fs::read_to_string(format!("{mp}/f")).unwrap(), format!("{vol} v1"));
    }
    // Where the volume has none of that name, another volume's is still
    // refused as before, and an ambiguous name still asks for an id.
    d.cli_ok(&["volume", "create", "spare"]);
    d.cli_ok(&["snapshot", "create", "spare", "--name", "only-spare"]);
    let out = d.cli(&["snapshot", "revert", "db", "only-spare"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("another volume"), "{err}");
    let out = d.cli(&["snapshot", "rm", "before"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("use an id"), "{err}");
}

#[test]
fn errors_exit_non_zero_with_one_line() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("cli-errors");
    for args in [
        vec!["volume", "inspect", "ghost"],
        vec!["volume", "create", "bad/name"],
        vec!["volume", "create", "x", "-o", "colour=red"],
        vec!["volume", "create", "x", "-o", "novalue"],
        vec!["snapshot", "revert", "ghost", "s"],
        vec!["volume", "purge", "ghost"],
    ] {
        let out = d.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("ballast: "), "{args:?}: {err}");
    }
    // Nothing reachable at the address: also one clear line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["--admin", "unix:///nonexistent/admin.sock", "volume", "ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ballast daemon at"));
    assert!(d.names().is_empty());
}

#[test]
fn volume_create_takes_size_and_pool_as_flags_like_its_options() {
    if !root_or_skip() {
        return;
    }
    let pools = tempfile::tempdir().unwrap();
    let config = format!(
        "[[pool]]\nname = \"main\"\nbackend = \"dir\"\ndefault = true\n\
         [[pool]]\nname = \"side\"\nbackend = \"dir\"\npath = \"{}\"\n",
        pools.path().join("side").display()
    );
    let d = Daemon::private_with("cli-create-flags", &config);
    d.cli_ok(&["volume", "create", "placed", "--pool", "side"]);
    let v: Value = serde_json::from_str(&d.cli_ok(&["volume", "inspect", "placed"])).unwrap();
    assert_eq!(v["driverOpts"]["pool"], "side", "{v}");

    // --size reaches the daemon, which says what it can and cannot do.
    let out = d.cli(&["volume", "create", "sized", "--size", "64M", "--pool", "side"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot enforce a size limit"), "{err}");
    let out = d.cli(&["volume", "create", "twice", "--size", "1G", "-o", "size=2G"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("use one"), "{err}");
    assert_eq!(d.names(), ["placed"]);
}
