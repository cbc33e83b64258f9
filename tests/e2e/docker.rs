//! The real Docker engine driving ballast through `docker` and
//! `docker-compose`.

use crate::harness::{Daemon, Engine, IMAGE, engine, wait_until};

/// `docker run --rm` of a shell command with `vol` at /data.
pub(crate) fn run(e: &Engine, vol: &str, script: &str) -> String {
    e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{vol}:/data"),
        IMAGE,
        "sh",
        "-c",
        script,
    ])
}

/// A detached container labelled for cleanup; returns its id.
pub(crate) fn start(e: &Engine, driver: &str, vol: &str, script: &str) -> String {
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        &format!("ballast-test={driver}"),
        "-v",
        &format!("{vol}:/data"),
        IMAGE,
        "sh",
        "-c",
        script,
    ])
}

#[test]
fn create_inspect_ls_rm() {
    let Some(e) = engine() else { return };
    let d = Daemon::for_docker("ballast-e2e-basic", e);
    let create = [
        "volume",
        "create",
        "--driver",
        &d.driver,
        "-o",
        "description=web data",
        "-o",
        "mode=0750",
        "web",
    ];
    e.ok(&create);
    let v = e.inspect("web");
    assert_eq!(v["Driver"], d.driver.as_str());
    assert_eq!(v["Status"]["state"], "inactive");
    assert_eq!(v["Status"]["description"], "web data");
    assert_eq!(v["Status"]["pool"], "default");
    assert!(v["Mountpoint"].as_str().unwrap().starts_with(d.state_dir().to_str().unwrap()));
    assert!(v["CreatedAt"].as_str().unwrap().contains('T'));
    assert_eq!(e.volumes(&d.driver), vec!["web"]);
    // The same create again is fine; Docker answers it from Get.
    e.ok(&create);
    e.ok(&["volume", "rm", "web"]);
    assert!(e.volumes(&d.driver).is_empty());
    assert!(d.names().is_empty(), "ballast no longer lists it");
}

#[test]
fn data_outlives_containers_and_is_shared() {
    let Some(e) = engine() else { return };
    let d = Daemon::for_docker("ballast-e2e-data", e);
    e.ok(&["volume", "create", "--driver", &d.driver, "shared"]);
    run(e, "shared", "echo first > /data/a");
    assert_eq!(run(e, "shared", "cat /data/a"), "first");

    // Two containers at once; one exits, the other still reads and writes.
    let one = start(e, &d.driver, "shared", "sleep 300");
    let two = start(e, &d.driver, "shared", "sleep 300");
    e.ok(&["exec", &one, "sh", "-c", "echo from-one > /data/b"]);
    assert_eq!(e.ok(&["exec", &two, "cat", "/data/b"]), "from-one");
    assert_eq!(d.get("shared")["Status"]["mounts"], 2);
    e.ok(&["rm", "-f", &one]);
    assert_eq!(e.ok(&["exec", &two, "cat", "/data/a", "/data/b"]), "first\nfrom-one");
    e.ok(&["exec", &two, "sh", "-c", "echo from-two > /data/c"]);
    assert_eq!(d.get("shared")["Status"]["state"], "active");

    // In use: refused, by Docker and by us.
    let err = e.fails(&["volume", "rm", "shared"]);
    assert!(err.contains("in use"), "{err}");
    let err = d.call_err("VolumeDriver.Remove", r#"{"Name":"shared"}"#);
    assert!(err.contains("in use by 1 mount"), "{err}");

    e.ok(&["rm", "-f", &two]);
    wait_until("the last unmount", || d.get("shared")["Status"]["state"] == "inactive");
    assert_eq!(run(e, "shared", "cat /data/c"), "from-two");
    e.ok(&["volume", "rm", "shared"]);
}

#[test]
fn removing_a_volume_in_use_names_the_containers_that_mount_it() {
    let Some(e) = engine() else { return };
    let d = Daemon::for_docker("ballast-e2e-inuse", e);
    e.ok(&["volume", "create", "--driver", &d.driver, "ledger-inuse"]);
    let label = format!("ballast-test={}", d.driver);
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        &label,
        "--name",
        "ledger-inuse-writer",
        "-v",
        "ledger-inuse:/data",
        IMAGE,
        "sleep",
        "300",
    ]);

    let out = d.cli(&["volume", "rm", "ledger-inuse"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("in use by 1 mount(s), of container(s) ledger-inuse-writer"), "{err}");
    assert_eq!(d.get("ledger-inuse")["Status"]["state"], "active", "the refusal changed nothing");

    e.ok(&["rm", "-f", "ledger-inuse-writer"]);
    wait_until("the unmount", || d.get("ledger-inuse")["Status"]["mounts"] == 0);
    d.cli_ok(&["volume", "rm", "ledger-inuse"]);
}

#[test]
fn bad_input_through_docker_is_refused_and_creates_nothing() {
    let Some(e) = engine() else { return };
    let d = Daemon::for_docker("ballast-e2e-bad", e);
    let long = "y".repeat(300);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-o", "colour=red", "v1"], "unknown option \"colour\""),
        (vec!["-o", "pool=nowhere", "v2"], "no such pool"),
        (vec!["-o", "size=1G", "v3"], "cannot enforce a size limit"),
        (vec!["../x"], "invalid volume name"),
        (vec!["a/b"], "invalid volume name"),
        (vec![long.as_str()], "invalid volume name"),
    ];
    for (args, needle) in cases {
        let mut full = vec!["volume", "create", "--driver", d.driver.as_str()];
        full.extend(args.iter().copied());
        let err = e.fails(&full);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(e.volumes(&d.driver).is_empty());
    assert!(d.names().is_empty());
}

#[test]
fn kill9_with_a_running_container_loses_nothing() {
    let Some(e) = engine() else { return };
    let mut d = Daemon::for_docker("ballast-e2e-crash", e);
    e.ok(&["volume", "create", "--driver", &d.driver, "durable"]);
    let c = start(e, &d.driver, "durable", "echo before > /data/f; sleep 300");
    wait_until("the container's write", || {
        e.docker(&["exec", &c, "cat", "/data/f"]).status.success()
    });

    d.kill9();
    d.start_again();

    assert_eq!(e.ok(&["exec", &c, "cat", "/data/f"]), "before");
    e.ok(&["exec", &c, "sh", "-c", "echo after >> /data/f"]);
    let v = e.inspect("durable");
    assert_eq!(v["Status"]["state"], "active");
    assert_eq!(v["Status"]["mounts"], 1, "the mount count survived the crash");
    assert_eq!(e.volumes(&d.driver), vec!["durable"]);
    e.fails(&["volume", "rm", "durable"]);

    e.ok(&["rm", "-f", &c]);
    wait_until("the unmount", || d.get("durable")["Status"]["mounts"] == 0);
    assert_eq!(run(e, "durable", "cat /data/f"), "before\nafter");
    e.ok(&["volume", "rm", "durable"]);
    assert!(d.names().is_empty());
}

#[test]
fn compose_up_and_down() {
    let Some(e) = engine() else { return };
    if std::process::Command::new("docker-compose").arg("version").output().is_err() {
        crate::harness::skip("docker-compose is not installed (apt-get install docker-compose)");
        return;
    }
    let d = Daemon::for_docker("ballast-e2e-compose", e);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        format!(
            r#"version: "3.7"
services:
  app:
    image: {IMAGE}
    network_mode: none
    command: ["sh", "-c", "echo composed > /data/hello && sleep 300"]
    volumes:
      - appdata:/data
volumes:
  appdata:
    driver: {driver}
    driver_opts:
      description: made by compose
      mode: "0700"
"#,
            driver = d.driver
        ),
    )
    .unwrap();
    let compose =
        |args: &[&str]| crate::compose_examples::compose(e, "ballastc", &[file.as_path()], args);
    compose(&["up", "-d"]);
    let v = e.inspect("ballastc_appdata");
    assert_eq!(v["Driver"], d.driver.as_str());
    assert_eq!(v["Status"]["description"], "made by compose");
    let mp = v["Mountpoint"].as_str().unwrap().to_string();
    wait_until("the compose service's write", || {
        std::path::Path::new(&format!("{mp}/hello")).exists()
    });
    assert_eq!(std::fs::read_to_string(format!("{mp}/hello")).unwrap(), "composed\n");
    compose(&["down", "-v"]);
    assert!(e.volumes(&d.driver).is_empty());
    assert!(d.names().is_empty(), "compose down -v removed it from ballast");
}

#[test]
fn snapshot_revert_and_trash_restore_with_containers() {
    let Some(e) = engine() else { return };
    let d = Daemon::for_docker("ballast-e2e-snap", e);
    e.ok(&["volume", "create", "--driver", &d.driver, "site"]);
    run(e, "site", "echo v1 > /data/page");
    let out = d.cli_ok(&["snapshot", "create", "site", "--name", "good"]);
    assert!(out.contains("created"), "{out}");
    run(e, "site", "echo v2 > /data/page; echo junk > /data/extra");

    // Refused while a container holds it, naming the mount.
    let c = start(e, &d.driver, "site", "sleep 300");
    let out = d.cli(&["snapshot", "revert", "site", "good"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by 1 mount"), "{out:?}");
    e.ok(&["rm", "-f", &c]);
    wait_until("the unmount", || d.get("site")["Status"]["mounts"] == 0);

    d.cli_ok(&["snapshot", "revert", "site", "good"]);
    assert_eq!(run(e, "site", "cat /data/page; ls /data"), "v1\npage");

    // docker volume rm is a soft delete: ballast brings it back.
    e.ok(&["volume", "rm", "site"]);
    assert!(e.volumes(&d.driver).is_empty());
    d.cli_ok(&["volume", "restore", "site"]);
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        &format!("type=volume,src=site,dst=/data,volume-driver={}", d.driver),
        IMAGE,
        "cat",
        "/data/page",
    ]);
    assert_eq!(out, "v1");
    e.ok(&["volume", "rm", "site"]);
}

/// Writes 64 MiB into `vol` from a container, which must fail (the volume
/// is smaller); returns what `dd` said.
pub(crate) fn write_past_the_size(e: &Engine, vol: &str) -> String {
    let data = format!("{vol}:/data");
    let dd = ["dd", "if=/dev/zero", "of=/data/fill", "bs=1M", "count=64", "conv=fsync"];
    let mut args = vec!["run", "--rm", "--network", "none", "-v", &data, IMAGE];
    args.extend(dd);
    let out = e.docker(&args);
    assert!(!out.status.success(), "writing past the size of {vol} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Snapshot, revert and clone of a volume in `pool`, seen by containers:
/// shared by the backend tests. Docker's volume names are global across
/// drivers and these tests run at once, so the names carry the driver's.
pub(crate) fn snapshot_revert_clone_in_containers(e: &Engine, d: &Daemon, pool: &str) {
    let (vol, snap, clone) =
        (format!("{}-sv", d.driver), format!("{}-good", d.driver), format!("{}-clone", d.driver));
    let pool_opt = format!("pool={pool}");
    e.ok(&["volume", "create", "--driver", &d.driver, "-o", &pool_opt, "-o", "size=64M", &vol]);
    run(e, &vol, "echo v1 > /data/page");
    let out = d.cli_ok(&["snapshot", "create", &vol, "--name", &snap]);
    assert!(out.contains("created"), "{out}");
    run(e, &vol, "echo v2 > /data/page; echo junk > /data/extra");
    d.cli_ok(&["snapshot", "revert", &vol, &snap]);
    assert_eq!(run(e, &vol, "cat /data/page; ls /data"), "v1\npage");
    e.ok(&[
        "volume",
        "create",
        "--driver",
        &d.driver,
        "-o",
        &format!("from-snapshot={snap}"),
        &clone,
    ]);
    assert_eq!(run(e, &clone, "cat /data/page"), "v1");
    run(e, &clone, "echo mine > /data/page");
    assert_eq!(run(e, &vol, "cat /data/page"), "v1", "the clone is independent");
    e.ok(&["volume", "rm", &vol, &clone]);
}
