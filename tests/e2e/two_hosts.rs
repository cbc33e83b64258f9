//! The two-hosts fixture itself (see `hosts`), without ballast's cluster
//! feature: each host is its own machine to Docker and ballast, the
//! shared GlusterFS volume and etcd cluster behave as a cluster's would,
//! and a partition cuts one host alone.

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::harness::IMAGE;
use crate::hosts::{
    DRIVER, Etcd, EtcdProxy, Gluster, Host, answer, can_run, get_at, healthy_at, put_at, send,
    swarm_init, tools_or_skip, wait_for,
};

const NAMESPACES: (&str, &str) = ("nsenter", "util-linux");

/// `docker run --rm` on `host` of a shell command with `vol` at /data.
fn run(host: &Host, vol: &str, script: &str) -> String {
    crate::docker::run(host.engine, vol, script)
}

#[test]
fn two_hosts_have_their_own_engines_and_their_own_plugin_sockets() {
    if !can_run(&[NAMESPACES]) {
        return;
    }
    let mut a = Host::start("own-a", "");
    let b = Host::start("own-b", "");
    let id = |h: &Host| h.ok(&["info", "--format", "{{.ID}}"]);
    assert_ne!(id(&a), id(&b), "two engines");

    // Each namespace has the driver's socket at Docker's fixed path, and
    // it is that host's daemon's; the machine's own path has none.
    let socket = format!("/run/docker/plugins/{DRIVER}.sock");
    let inode =
        |h: &Host| std::fs::metadata(h.plugin_dir().join(format!("{DRIVER}.sock"))).unwrap().ino();
    for h in [&a, &b] {
        assert_eq!(h.nsenter_ok(&["stat", "-c", "%i", &socket]), inode(h).to_string());
    }
    assert_ne!(inode(&a), inode(&b));
    assert!(!Path::new(&socket).exists(), "the socket is only inside the hosts");

    // Without a cluster, a volume is only on the host that made it.
    a.ok(&["volume", "create", "--driver", DRIVER, "own-on-a"]);
    assert_eq!(a.engine.volumes(DRIVER), ["own-on-a"]);
    assert!(b.engine.volumes(DRIVER).is_empty(), "B's engine asks B's daemon");
    b.ok(&["volume", "create", "--driver", DRIVER, "own-on-b"]);
    assert_eq!(b.engine.volumes(DRIVER), ["own-on-b"]);
    assert_eq!(a.ballast().names(), ["own-on-a"]);
    assert!(a.cli_ok(&["volume", "ls"]).contains("own-on-a"));
    assert!(!b.cli_ok(&["volume", "ls"]).contains("own-on-a"));

    // A container on each host, with the host's ballast volume.
    assert_eq!(run(&a, "own-on-a", "echo from-a > /data/f; cat /data/f"), "from-a");
    assert_eq!(run(&b, "own-on-b", "echo from-b > /data/f; cat /data/f"), "from-b");
    // A's daemon killed and started again serves the same volume.
    a.kill9_ballast();
    a.start_ballast();
    assert_eq!(run(&a, "own-on-a", "cat /data/f"), "from-a");
}

#[test]
fn a_glusterfs_volume_mounted_in_both_hosts_shares_its_bytes() {
    if !can_run(&[
        NAMESPACES,
        ("glusterd", "glusterfs-server"),
        ("mount.glusterfs", "glusterfs-client"),
    ]) {
        return;
    }
    let gluster = Gluster::start("shares-bytes");
    let mut a = Host::bare("glusterfs-a");
    let b = Host::bare("glusterfs-b");
    let at_a = gluster.mount_in(&a);
    let at_b = gluster.mount_in(&b);
    let (at_a, at_b) = (at_a.to_str().unwrap(), at_b.to_str().unwrap());

    a.sh(&format!("echo written-in-a > {at_a}/f"));
    assert_eq!(b.sh(&format!("cat {at_b}/f")), "written-in-a");
    b.sh(&format!("echo written-in-b >> {at_b}/f"));
    assert_eq!(a.sh(&format!("cat {at_a}/f")), "written-in-a\nwritten-in-b");
    // The mount is the hosts' own: the machine sees an empty directory.
    assert_eq!(std::fs::read_dir(at_a).unwrap().count(), 0, "not mounted outside the host");

    // A's ballast, started after the mount, keeps a pool on it; what a
    // container writes to its volume, B's namespace reads.
    a.serve(&format!(
        "[[pool]]\nname = \"shared\"\nbackend = \"dir\"\npath = \"{at_a}/shared\"\n\
         default = true\n"
    ));
    a.ok(&["volume", "create", "--driver", DRIVER, "glusterfs-pooled"]);
    assert_eq!(
        run(&a, "glusterfs-pooled", "echo in-a-volume > /data/v; cat /data/v"),
        "in-a-volume"
    );
    let found = b.sh(&format!("grep -rl in-a-volume {at_b}/shared"));
    assert!(found.ends_with("/v"), "{found}");
}

#[test]
fn the_three_member_etcd_cluster_answers_with_one_member_down() {
    if !tools_or_skip(&[("etcd", "etcd-server")]) {
        return;
    }
    let mut etcd = Etcd::start();
    assert_eq!(etcd.endpoints().len(), 3);
    etcd.put(0, "before", "all-up").unwrap();

    etcd.stop_member(0);
    assert!(!etcd.healthy(0));
    assert_eq!(etcd.get(1, "before").unwrap().as_deref(), Some("all-up"));
    etcd.put(2, "during", "one-down").unwrap();

    // Two down: the last member has no quorum, and says so.
    etcd.stop_member(1);
    wait_for("the last member to lose its quorum", || !etcd.healthy(2));
    assert!(etcd.put(2, "lost", "no-quorum").is_err());

    // Back up, the stopped members catch up on what they missed.
    etcd.start_member(1);
    etcd.start_member(0);
    assert_eq!(etcd.get(0, "during").unwrap().as_deref(), Some("one-down"));
    etcd.stop_all();
    etcd.start_all();
    assert_eq!(etcd.get(1, "during").unwrap().as_deref(), Some("one-down"));
}

#[test]
fn a_partitioned_host_cannot_reach_etcd_until_healed() {
    if !tools_or_skip(&[("etcd", "etcd-server")]) {
        return;
    }
    let etcd = Etcd::start();
    let (a, b) = (EtcdProxy::start(&etcd), EtcdProxy::start(&etcd));
    assert_ne!(a.endpoints(), etcd.endpoints());
    let long = Duration::from_secs(30);
    for i in 0..3 {
        assert!(healthy_at(a.addr(i), long), "member {i} through A's proxy");
    }
    put_at(a.addr(0), "from-a", "1").unwrap();
    let mut idle = TcpStream::connect(a.addr(1)).unwrap();

    a.partition();
    let short = Duration::from_secs(3);
    for i in 0..3 {
        assert!(!healthy_at(a.addr(i), short), "member {i} answers A through the partition");
    }
    // A connection made before the cut carries nothing either: silence,
    // not a closed connection.
    send(&mut idle, "GET", "/health", "", short).unwrap();
    let silent = answer(&mut idle).unwrap_err();
    assert!(
        matches!(silent.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        "{silent}"
    );
    // The other host still reaches etcd.
    put_at(b.addr(2), "from-b", "2").unwrap();
    assert_eq!(get_at(b.addr(0), "from-a").unwrap().as_deref(), Some("1"));

    a.heal();
    for i in 0..3 {
        assert!(healthy_at(a.addr(i), long), "member {i} through A's healed proxy");
    }
    assert_eq!(get_at(a.addr(1), "from-b").unwrap().as_deref(), Some("2"));
    // The request held during the cut is answered now.
    idle.set_read_timeout(Some(long)).unwrap();
    let (status, body) = answer(&mut idle).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn two_engines_form_a_swarm() {
    if !can_run(&[NAMESPACES]) {
        return;
    }
    let a = Host::start("swarm-a", "");
    let b = Host::start("swarm-b", "");
    let swarm = swarm_init(&a, &b);
    wait_for("two ready nodes", || {
        let nodes = a.ok(&["node", "ls", "--format", "{{.Status}}"]);
        nodes.lines().filter(|s| *s == "Ready").count() == 2
    });
    let state = |h: &Host| h.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!((state(&a), state(&b)), ("active".into(), "active".into()));
    let managers = a.ok(&["node", "ls", "--filter", "role=manager", "-q"]);
    assert_eq!(managers.lines().count(), 1, "A manages, B works");

    // A global service runs a task on each host, each with a ballast
    // volume of its host's daemon.
    a.ok(&[
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--mode",
        "global",
        "--name",
        "swarm-everywhere",
        "--mount",
        &format!("type=volume,source=swarm-data,destination=/data,volume-driver={DRIVER}"),
        IMAGE,
        "sh",
        "-c",
        "echo here > /data/f; sleep 600",
    ]);
    wait_for("a running task on each host", || {
        let tasks = a.ok(&["service", "ps", "--format", "{{.CurrentState}}", "swarm-everywhere"]);
        eprintln!("{tasks}");
        tasks.lines().filter(|t| t.starts_with("Running")).count() == 2
    });
    for h in [&a, &b] {
        assert_eq!(h.ballast().names(), ["swarm-data"], "on {}", h.name);
    }
    a.ok(&["service", "rm", "swarm-everywhere"]);
    drop(swarm);
    assert_eq!((state(&a), state(&b)), ("inactive".into(), "inactive".into()));
}
