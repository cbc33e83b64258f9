//! The managed plugin in a cluster: what Docker's volume plugin
//! certification checks across two nodes, on two hosts of the `hosts`
//! fixture, each with the plugin installed from a registry into its own
//! engine. Each plugin's `pools` mount is its host's GlusterFS mount,
//! under a shared `dir` pool (`scope = "global"`), and its config names
//! its host's way to the three-member etcd. A volume made and written on
//! one node is listed on the other, mounts there with the same bytes,
//! and removed there is gone from both. And fencing works from inside the
//! plugin: a node cut off from etcd stops its container writing before
//! the other node may mount the volume.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::IMAGE;
use crate::hosts::{Etcd, Gluster, Host, can_run, wait_for};
use crate::managed_plugin::{Registry, build_and_push};

const NEEDS: &[(&str, &str)] = &[
    ("nsenter", "util-linux"),
    ("etcd", "etcd-server"),
    ("glusterd", "glusterfs-server"),
    ("mount.glusterfs", "glusterfs-client"),
    ("docker-registry", "docker-registry"),
];

/// The plugin's alias on both engines, and the test's volume.
const PLUGIN: &str = "ballast-mpcl";
const VOL: &str = "mpcl-data";
/// The container that writes the volume on node 1 when it is cut off.
const WRITER: &str = "mpcl-writer";

/// The plugin's configuration: the default pool on its `pools` mount
/// (the host's GlusterFS mount), shared by the nodes, and `cluster`.
fn config(cluster: &str) -> String {
    format!(
        "[[pool]]\nname = \"shared\"\nbackend = \"dir\"\npath = \"/srv/ballast/pool\"\n\
         scope = \"global\"\ndefault = true\n\n{cluster}"
    )
}

/// The host directories of a host's plugin mounts (beside its engine, so
/// that a plugin a failed run left finds them when that engine starts).
fn sources(host: &Host) -> PathBuf {
    host.dir().join("mpcl-plugin")
}

/// What the test makes on a host's engine, the plugin last: a plugin left
/// installed would be started by the next run's engine.
fn clean(host: &Host) {
    host.docker(&["rm", "-f", WRITER]);
    host.docker(&["volume", "rm", "-f", VOL]);
    host.docker(&["plugin", "disable", "-f", PLUGIN]);
    host.docker(&["plugin", "rm", "-f", PLUGIN]);
}

/// Cleans both hosts when dropped (declared after them: dropped first,
/// while their engines run).
struct Cleanup<'h>(&'h Host, &'h Host);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for host in [self.0, self.1] {
            clean(host);
            let _ = std::fs::remove_dir_all(sources(host));
        }
    }
}

/// Installs the plugin `reference` on `host`, its `pools` mount on
/// `share`, its config with the `[cluster]` section `cluster`.
fn install(host: &Host, reference: &str, share: &Path, cluster: &str) {
    let dir = sources(host);
    let _ = std::fs::remove_dir_all(&dir);
    let (state, admin, conf) = (dir.join("state"), dir.join("admin"), dir.join("conf"));
    for d in [&state, &admin, &conf] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(conf.join("ballast.toml"), config(cluster)).unwrap();
    host.ok(&[
        "plugin",
        "install",
        "--grant-all-permissions",
        "--alias",
        PLUGIN,
        reference,
        &format!("state.source={}", state.display()),
        &format!("admin.source={}", admin.display()),
        &format!("config.source={}", conf.display()),
        &format!("pools.source={}", share.display()),
    ]);
}

/// The pid of `host`'s plugin: the `ballast serve` whose /run/ballast is
/// the host's `admin` source (both hosts' plugins run on this machine).
fn plugin_pid(host: &Host) -> Option<u32> {
    let admin = std::fs::metadata(sources(host).join("admin")).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !cmd.starts_with(b"/ballast\0serve\0") {
            return None;
        }
        let run = std::fs::metadata(format!("/proc/{pid}/root/run/ballast")).ok()?;
        (run.dev() == admin.dev() && run.ino() == admin.ino()).then_some(pid)
    })
}

/// What `host`'s plugin has at /srv/ballast: `name`'s content, or its
/// mount table's line for /srv/ballast (to say what it has instead).
fn seen_by_plugin(host: &Host, name: &str) -> Result<String, String> {
    let pid = plugin_pid(host).ok_or_else(|| format!("no plugin process of {}", host.name))?;
    std::fs::read_to_string(format!("/proc/{pid}/root/srv/ballast/{name}")).map_err(|e| {
        let table = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        let line = table.lines().find(|l| l.contains(" /srv/ballast ")).unwrap_or("no mount");
        format!("{e}; the plugin's /srv/ballast: {line}")
    })
}

/// `docker run --rm` of a shell command with the volume at /data.
fn run(host: &Host, script: &str) -> String {
    let volume = format!("{VOL}:/data");
    host.ok(&["run", "--rm", "--network", "none", "-v", &volume, IMAGE, "sh", "-c", script])
}

/// Whether `host`'s container `name` can still write its volume.
fn can_write(host: &Host, name: &str) -> bool {
    host.docker(&["exec", name, "sh", "-c", "echo x > /data/probe"]).status.success()
}

fn listed(host: &Host) -> bool {
    host.ok(&["volume", "ls", "-q"]).lines().any(|l| l == VOL)
}

#[test]
fn the_managed_plugin_on_two_nodes_shares_a_volume_made_on_one_and_removed_on_the_other() {
    if !can_run(NEEDS) {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let etcd = Etcd::start();
    let gluster = Gluster::start("mpcl");
    let mut a = Host::bare("mpcl-a");
    let mut b = Host::bare("mpcl-b");
    // What an interrupted earlier run may have left on these engines.
    clean(&a);
    clean(&b);

    // Built once, on A's engine; both engines install it from the registry.
    let reference = format!("{}/ballast-mpcl:1", registry.addr);
    build_and_push(&a.engine.host, &reference);
    let clusters = [a.connect(&etcd), b.connect(&etcd)];
    let _cleanup = Cleanup(&a, &b);
    let mut shares = Vec::new();
    for (host, cluster) in [&a, &b].into_iter().zip(&clusters) {
        let share = gluster.mount_in(host);
        // Shared, as a mount on a systemd host is (its / is shared): in
        // the fixture's namespaces, whose mounts are slaves of the
        // machine's, a new mount is private, and the plugin's bind of it
        // would see what was mounted at install time but no later mount.
        host.sh(&format!("mount --make-shared {}", share.display()));
        install(host, &reference, &share, cluster);
        shares.push(share);
    }

    // Each plugin has its host's GlusterFS mount at /srv/ballast: a file
    // written there in A's namespace is in both plugins' mounts.
    a.sh(&format!("echo from-a > {}/mpcl-marker", shares[0].display()));
    for host in [&a, &b] {
        let seen = seen_by_plugin(host, "mpcl-marker");
        assert_eq!(seen.as_deref(), Ok("from-a\n"), "the plugin of {}", host.name);
    }

    // Mounts made on a node after its plugin started reach the plugin
    // too: its rshared bind of the share joined the share's peer group.
    for (host, share) in [&a, &b].into_iter().zip(&shares) {
        let late = share.join(format!("late-{}", host.name));
        let l = late.display();
        host.sh(&format!("mkdir -p {l} && mount -t tmpfs mpcl-late {l} && echo late > {l}/x"));
        let seen = seen_by_plugin(host, &format!("late-{}/x", host.name));
        host.sh(&format!("umount {l} && rmdir {l}"));
        assert_eq!(seen.as_deref(), Ok("late\n"), "the plugin of {}", host.name);
    }

    // Created and written on node 1.
    a.ok(&["volume", "create", "-d", PLUGIN, VOL]);
    run(&a, "echo written-on-node-1 > /data/f");

    // Listed on node 2, as the plugin's and global.
    wait_for("node 2 to list the volume", || listed(&b));
    let v = b.engine.inspect(VOL);
    assert_eq!(v["Driver"], format!("{PLUGIN}:latest"), "{v}");
    assert_eq!(v["Scope"], "global", "{v}");

    // Mounted on node 2: the same bytes.
    assert_eq!(run(&b, "cat /data/f"), "written-on-node-1");

    // Fencing inside the plugin: node 1, cut off from etcd while its
    // container writes, stops that container writing before node 2 may
    // mount the volume (the plugin enters the container's namespace).
    let volume = format!("{VOL}:/data");
    let script = "while true; do date >> /data/log; sleep 0.2; done";
    let mut detached = vec!["run", "-d", "--name", WRITER, "--network", "none", "-v"];
    detached.extend([volume.as_str(), IMAGE, "sh", "-c", script]);
    a.ok(&detached);
    assert!(can_write(&a, WRITER));
    a.partition();
    let cut = Instant::now();
    let mut probe = vec!["run", "--rm", "--network", "none", "-v", &volume, IMAGE];
    probe.extend(["sh", "-c", "echo from-node-2 > /data/g"]);
    while !b.docker(&probe).status.success() {
        assert!(cut.elapsed() < Duration::from_secs(90), "node 2 never took over");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("node 2 wrote {:?} after node 1 was cut off", cut.elapsed());
    assert!(!can_write(&a, WRITER), "node 1's container still writes");
    a.heal();
    a.ok(&["rm", "-f", WRITER]);

    // Removed on node 2: gone from both.
    b.ok(&["volume", "rm", VOL]);
    assert!(!listed(&b));
    wait_for("node 1 to forget the volume", || !listed(&a));
}
