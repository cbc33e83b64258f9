//! ballast in a cluster (docs/cluster.md), on two hosts of the `hosts`
//! fixture: real engines, a three-member etcd, a GlusterFS volume under
//! the shared pool. What an operator would check by hand: a volume made
//! on one node is there on the other, one writer at a time, a crashed or
//! cut-off holder lets go within its lease and stops writing first.

use std::time::{Duration, Instant};

use crate::harness::IMAGE;
use crate::hosts::{DRIVER, Etcd, Gluster, Host, LEASE_TTL, can_run, swarm_init, wait_for};

const NEEDS: &[(&str, &str)] = &[
    ("nsenter", "util-linux"),
    ("etcd", "etcd-server"),
    ("glusterd", "glusterfs-server"),
    ("mount.glusterfs", "glusterfs-client"),
];

/// A config whose default pool is a `dir` pool on `at`, shared by the
/// cluster's hosts.
fn shared_pool(at: &std::path::Path) -> String {
    format!(
        "[[pool]]\nname = \"shared\"\nbackend = \"dir\"\npath = \"{}/pool\"\nscope = \"global\"\n\
         default = true\n\n[[pool]]\nname = \"local\"\nbackend = \"dir\"\n",
        at.display()
    )
}

/// Two hosts in the cluster of `etcd`, each with `gluster` mounted under
/// its shared pool.
fn two_hosts(prefix: &str, etcd: &Etcd, gluster: &Gluster) -> (Host, Host) {
    let mut a = Host::bare(&format!("{prefix}-a"));
    let mut b = Host::bare(&format!("{prefix}-b"));
    for h in [&mut a, &mut b] {
        let at = gluster.mount_in(h);
        h.join(etcd, &shared_pool(&at));
    }
    (a, b)
}

/// The timestamp (RFC 3339, UTC, fixed width: text order is time order)
/// of the first line of a daemon's log that holds all of `words`.
fn log_time(log: &str, words: &[&str]) -> String {
    let line = log.lines().find(|l| words.iter().all(|w| l.contains(w)));
    let line = line.unwrap_or_else(|| panic!("no log line with {words:?} in:\n{log}"));
    line.split_whitespace().next().unwrap_or_default().to_string()
}

/// A container on `host` that appends to /data/log every 200 ms.
fn writer(host: &Host, name: &str, vol: &str) {
    host.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "-v",
        &format!("{vol}:/data"),
        IMAGE,
        "sh",
        "-c",
        "while true; do date >> /data/log; sleep 0.2; done",
    ]);
}

/// Whether the container `name` can still write its volume.
fn can_write(host: &Host, name: &str) -> bool {
    host.docker(&["exec", name, "sh", "-c", "echo x > /data/probe"]).status.success()
}

#[test]
fn a_volume_made_on_one_host_is_listed_used_and_removed_from_the_other() {
    if !can_run(NEEDS) {
        return;
    }
    let etcd = Etcd::start();
    let gluster = Gluster::start("cl-share");
    let (a, b) = two_hosts("cl-share", &etcd, &gluster);
    let vol = "cl-share-data";

    a.ok(&["volume", "create", "--driver", DRIVER, vol]);
    let made = Instant::now();
    wait_for("B to list A's volume", || b.engine.volumes(DRIVER).contains(&vol.to_string()));
    eprintln!("listed on B {:?} after its create on A", made.elapsed());
    assert!(made.elapsed() < Duration::from_secs(5), "B saw it after {:?}", made.elapsed());

    // The same bytes on both hosts, through the shared pool.
    a.run(vol, "echo written-on-a > /data/f");
    assert_eq!(b.run(vol, "cat /data/f"), "written-on-a");
    let on_b = b.admin_volume(vol);
    assert_eq!(on_b["hostId"], "cl-share-a", "{on_b}");
    assert_eq!(on_b["storagePoolId"], "shared");
    // Let go after the container: B's view follows etcd's watch.
    wait_for("the volume to be free", || b.admin_volume(vol)["leaseState"] == "free");

    // A name is the cluster's: B cannot make another volume of it.
    let err = b
        .ballast()
        .call_err("VolumeDriver.Create", &format!(r#"{{"Name":"{vol}","Opts":{{"size":"1G"}}}}"#));
    assert!(err.contains("already") || err.contains("taken"), "{err}");

    // `ballast cluster status` lists both hosts, each once.
    let status = a.cli_ok(&["cluster", "status"]);
    assert!(status.contains("cl-share-a (this host)") && status.contains("cl-share-b"), "{status}");

    // Removed on B, gone from both.
    b.ok(&["volume", "rm", vol]);
    wait_for("A to forget the volume", || !a.ballast().names().contains(&vol.to_string()));
    assert!(!a.engine.volumes(DRIVER).contains(&vol.to_string()));
    assert!(!b.engine.volumes(DRIVER).contains(&vol.to_string()));
}

#[test]
fn one_host_writes_a_volume_at_a_time_and_a_crashed_holder_lets_go_within_its_lease() {
    if !can_run(NEEDS) {
        return;
    }
    let etcd = Etcd::start();
    let gluster = Gluster::start("cl-lease");
    let (mut a, b) = two_hosts("cl-lease", &etcd, &gluster);
    let vol = "cl-lease-data";
    a.ok(&["volume", "create", "--driver", DRIVER, vol]);
    wait_for("B to know the volume", || b.ballast().names().contains(&vol.to_string()));
    writer(&a, "cl-lease-writer", vol);

    // B is refused, naming the holder, after its bounded wait.
    let err = b.mount(vol, "b-probe").unwrap_err();
    assert!(err.contains("host cl-lease-a") && err.contains("1 mount"), "{err}");
    let on_b = b.admin_volume(vol);
    assert_eq!(on_b["leaseState"], "heldElsewhere", "{on_b}");
    assert_eq!(on_b["holders"], serde_json::json!(["cl-lease-a"]));

    // A's daemon dies; within the lease's TTL (and a second) B holds it.
    a.kill9_ballast();
    let killed = Instant::now();
    let at = loop {
        if b.mount(vol, "b-probe").is_ok() {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "B never took over");
    };
    eprintln!("failover after kill -9 of the holder: {at:?} (lease TTL {LEASE_TTL:?})");
    assert!(at <= LEASE_TTL + Duration::from_millis(1500), "took {at:?}");

    // A's daemon back: it finds B holding the volume and fences its own
    // container, which can no longer write.
    a.start_ballast();
    wait_for("A's container to be fenced", || !can_write(&a, "cl-lease-writer"));
    let out = a.docker(&["exec", "cl-lease-writer", "sh", "-c", "echo x > /data/after"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only"), "{out:?}");
    let err = a.mount(vol, "a-again").unwrap_err();
    assert!(err.contains("fenced"), "{err}");
    b.unmount(vol, "b-probe");
    a.ok(&["rm", "-f", "cl-lease-writer"]);
}

#[test]
fn a_host_cut_off_from_etcd_stops_writing_before_another_host_may_start() {
    if !can_run(NEEDS) {
        return;
    }
    let etcd = Etcd::start();
    let gluster = Gluster::start("cl-part");
    let (a, b) = two_hosts("cl-part", &etcd, &gluster);
    let vol = "cl-part-data";
    a.ok(&["volume", "create", "--driver", DRIVER, vol]);
    wait_for("B to know the volume", || b.ballast().names().contains(&vol.to_string()));
    writer(&a, "cl-part-writer", vol);
    assert!(can_write(&a, "cl-part-writer"));

    a.partition();
    let cut = Instant::now();
    let taken_at = loop {
        if b.mount(vol, "b-probe").is_ok() {
            break cut.elapsed();
        }
        assert!(cut.elapsed() < Duration::from_secs(60), "B never took over");
    };
    assert!(!can_write(&a, "cl-part-writer"), "A's container still writes");
    // The order, from the daemons' own clocks (one machine, one clock):
    // A's fencing was done before B's Mount was.
    let fenced = log_time(&a.ballast().log(), &["cluster: fenced", "cl-part-data"]);
    let mounted = log_time(&b.ballast().log(), &["mounted", "b-probe"]);
    eprintln!(
        "partition: A fenced at {fenced}, B mounted at {mounted} ({taken_at:?} after the cut)"
    );
    assert!(fenced < mounted, "A fenced at {fenced}, B mounted at {mounted}");

    // Healed, A still refuses its container's volume until it stops.
    a.heal();
    let err = a.mount(vol, "a-again").unwrap_err();
    assert!(err.contains("fenced") || err.contains("cl-part-b"), "{err}");
    a.ok(&["rm", "-f", "cl-part-writer"]);
    b.unmount(vol, "b-probe");
    wait_for("A to mount again", || a.mount(vol, "a-again").is_ok());
    a.unmount(vol, "a-again");
}

#[test]
fn with_one_etcd_member_down_all_works_and_with_none_only_local_volumes_mount() {
    if !can_run(NEEDS) {
        return;
    }
    let mut etcd = Etcd::start();
    let a = Host::in_cluster("cl-etcd-a", &etcd, "");
    let b = Host::in_cluster("cl-etcd-b", &etcd, "");

    etcd.stop_member(0);
    a.ok(&["volume", "create", "--driver", DRIVER, "cl-etcd-one-down"]);
    wait_for("B to list it", || b.ballast().names().contains(&"cl-etcd-one-down".to_string()));
    a.run("cl-etcd-one-down", "echo ok > /data/f");
    b.ok(&["volume", "rm", "cl-etcd-one-down"]);
    wait_for("A to forget it", || a.ballast().names().is_empty());
    etcd.start_member(0);

    a.ok(&["volume", "create", "--driver", DRIVER, "cl-etcd-cluster"]);
    a.ok(&["volume", "create", "--driver", DRIVER, "-o", "cluster=false", "cl-etcd-local"]);
    assert!(!b.ballast().names().contains(&"cl-etcd-local".to_string()), "a local volume");
    writer(&a, "cl-etcd-writer", "cl-etcd-cluster");
    // A writer that keeps a file open: the kernel refuses to make its
    // mount read-only (EBUSY), so fencing must stop the writer itself.
    a.ok(&["volume", "create", "--driver", DRIVER, "cl-etcd-open"]);
    a.ok(&[
        "run",
        "-d",
        "--name",
        "cl-etcd-open-writer",
        "--network",
        "none",
        "-v",
        "cl-etcd-open:/data",
        IMAGE,
        "sh",
        "-c",
        "exec 3>>/data/log; while true; do echo x >&3; sleep 0.2; done",
    ]);

    etcd.stop_all();
    // The running containers are fenced when the lease may have expired.
    wait_for("the mount to be fenced", || !can_write(&a, "cl-etcd-writer"));
    wait_for("the writer holding a file open to be stopped", || {
        a.ok(&["inspect", "-f", "{{.State.Running}}", "cl-etcd-open-writer"]) == "false"
    });
    a.ok(&["rm", "-f", "cl-etcd-open-writer"]);
    let err = a.mount("cl-etcd-cluster", "a-new").unwrap_err();
    assert!(err.contains("etcd") || err.contains("fenced"), "{err}");
    // A volume of this host alone works on.
    assert_eq!(a.run("cl-etcd-local", "echo still > /data/f; cat /data/f"), "still");
    a.ok(&["rm", "-f", "cl-etcd-writer"]);

    etcd.start_all();
    wait_for("cluster mounts to work again", || a.mount("cl-etcd-cluster", "a-back").is_ok());
    a.unmount("cl-etcd-cluster", "a-back");
}

#[test]
fn a_swarm_service_moved_to_the_other_node_keeps_its_data_and_a_global_one_writes_from_both() {
    if !can_run(NEEDS) {
        return;
    }
    let etcd = Etcd::start();
    let gluster = Gluster::start("cl-swarm");
    let (a, b) = two_hosts("cl-swarm", &etcd, &gluster);
    let swarm = swarm_init(&a, &b);
    let node_of = |h: &Host| h.ok(&["info", "--format", "{{.Swarm.NodeID}}"]);
    a.ok(&["node", "update", "--label-add", "at=a", &node_of(&a)]);
    a.ok(&["node", "update", "--label-add", "at=b", &node_of(&b)]);

    let mount_arg =
        |vol: &str| format!("type=volume,source={vol},destination=/data,volume-driver={DRIVER}");
    a.ok(&[
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--name",
        "cl-swarm-moves",
        "--constraint",
        "node.labels.at==a",
        "--env",
        "NODE={{.Node.ID}}",
        "--mount",
        &mount_arg("cl-swarm-moved"),
        IMAGE,
        "sh",
        "-c",
        "echo $NODE >> /data/nodes; sleep 600",
    ]);
    let running_on = |h: &Host, service: &str| {
        h.ok(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={service}")])
    };
    wait_for("the task on A", || !running_on(&a, "cl-swarm-moves").is_empty());
    a.ok(&[
        "service",
        "update",
        "--detach",
        "--constraint-rm",
        "node.labels.at==a",
        "--constraint-add",
        "node.labels.at==b",
        "cl-swarm-moves",
    ]);
    wait_for("the task on B", || !running_on(&b, "cl-swarm-moves").is_empty());
    let task = running_on(&b, "cl-swarm-moves");
    wait_for("B's task to write", || {
        let nodes = b.ok(&["exec", &task, "cat", "/data/nodes"]);
        nodes.lines().count() == 2
    });
    let nodes = b.ok(&["exec", &task, "cat", "/data/nodes"]);
    assert_eq!(nodes.lines().collect::<Vec<_>>(), [node_of(&a), node_of(&b)], "{nodes}");
    a.ok(&["service", "rm", "cl-swarm-moves"]);

    // Many writers: a global service on a multiHostRW volume.
    a.ok(&[
        "volume",
        "create",
        "--driver",
        DRIVER,
        "-o",
        "access-mode=multiHostRW",
        "cl-swarm-everyone",
    ]);
    wait_for("B to know it", || b.ballast().names().contains(&"cl-swarm-everyone".to_string()));
    a.ok(&[
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--mode",
        "global",
        "--name",
        "cl-swarm-global",
        "--env",
        "NODE={{.Node.ID}}",
        "--mount",
        &mount_arg("cl-swarm-everyone"),
        IMAGE,
        "sh",
        "-c",
        "echo $NODE >> /data/nodes; sleep 600",
    ]);
    wait_for("both nodes to write", || {
        let task = running_on(&a, "cl-swarm-global");
        !task.is_empty()
            && a.docker(&["exec", &task, "cat", "/data/nodes"])
                .stdout
                .split(|&c| c == b'\n')
                .filter(|l| !l.is_empty())
                .count()
                == 2
    });
    a.ok(&["service", "rm", "cl-swarm-global"]);
    drop(swarm);
}

#[test]
fn a_daemon_restarted_while_etcd_is_away_fences_the_containers_it_finds_running() {
    if !can_run(NEEDS) {
        return;
    }
    let mut etcd = Etcd::start();
    let mut a = Host::in_cluster("cl-restart-a", &etcd, "");
    a.ok(&["volume", "create", "--driver", DRIVER, "cl-restart-data"]);
    writer(&a, "cl-restart-writer", "cl-restart-data");
    assert!(can_write(&a, "cl-restart-writer"));

    // The daemon dies, etcd goes, the container writes on; the daemon
    // comes back without etcd. Its lease of before may expire any time:
    // it must not leave the container writing.
    a.kill9_ballast();
    etcd.stop_all();
    assert!(can_write(&a, "cl-restart-writer"), "nothing fences while the daemon is down");
    a.start_ballast();
    wait_for("the running container to be fenced", || !can_write(&a, "cl-restart-writer"));
    let log = a.ballast().log();
    assert!(log.contains("etcd has not answered since this daemon started"), "{log}");
    a.ok(&["rm", "-f", "cl-restart-writer"]);
    etcd.start_all();
}
