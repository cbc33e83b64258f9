//! Two hosts on one machine, for the tests of ballast in a cluster: each
//! host with its own Docker engine and its own ballast daemon, sharing a
//! three-member etcd cluster and a GlusterFS volume, as real nodes would.
//!
//! Design:
//! - A host is a mount namespace (`unshare -m --propagation slave`, held
//!   by a `sleep`) and not a VM or a container: its engine and daemon are
//!   the real binaries, started in it with `nsenter -t PID -m --`, so the
//!   harness's spawners and clients serve it with only a command prefix.
//!   Only mounts are private, which is what makes two hosts: Docker finds
//!   plugins at the fixed `/run/docker/plugins`, so each host binds a
//!   directory of its own over it (one driver name, `ballast-cluster`,
//!   means a different daemon on each host); `/run/containerd` likewise,
//!   so that each dockerd starts its own containerd in its namespace
//!   instead of using one a system might run outside it; and what ballast
//!   and dockerd mount (volumes, container roots, the shared GlusterFS
//!   volume) stays on its host. Slave propagation still lets the machine's
//!   own mounts in. Files and sockets outside those mounts are the same
//!   in every namespace, so the test process reaches each engine's and
//!   daemon's sockets by their paths without entering anything.
//! - The network is shared (one network namespace): the hosts talk over
//!   loopback on ports unique to the run, which keeps the engines' and
//!   swarm's networking simple and needs no veth or bridges.
//! - A partition of one host from etcd is a TCP proxy in the test process
//!   in front of each member, one per host: the host's ballast is given
//!   the proxy's endpoints. Cutting a host is then a flag in the test
//!   process: no iptables (the engines run with `--iptables=false`, and
//!   rules would cut the whole machine, not one host, since the hosts
//!   share loopback), and nothing to undo after a crash. The proxy holds
//!   bytes rather than closing connections, so a client sees silence and
//!   must notice by its own timeouts and keepalives, as with a pulled
//!   cable; on heal, held bytes flow on.
//! - Every server (etcd, glusterd, dockerd, ballast, the namespace holder)
//!   runs under `setpriv --pdeathsig`, from the harness's spawner thread,
//!   so nothing outlives the test process; the drops also stop them in
//!   order (volumes removed while ballast still answers, then ballast,
//!   dockerd, the namespace's mounts). GlusterFS's FUSE client is the
//!   exception (mount.glusterfs forks it off): a host unmounts what it
//!   mounted when dropped.

// Parts of the fixture (a host in a cluster, its partition) are there
// for the cluster's tests; the fixture's own tests do not use them all.
#![allow(dead_code)]

mod etcd;
mod gluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use etcd::{Etcd, EtcdProxy, answer, get_at, healthy_at, put_at, send};
pub use gluster::Gluster;

use crate::harness::{
    Daemon, Engine, engine, have, skip, spawn_dockerd_in, spawn_until_exit, stop_engine,
    stop_old_engine,
};

/// The driver name of ballast on every host: in a cluster, one name for
/// one set of volumes, wherever a container runs.
pub const DRIVER: &str = "ballast-cluster";

/// Whether tests of hosts can run: root and Docker as for every engine
/// test (see `engine`), and `tools` (command, Debian package). Skips (or
/// fails, under CI=true) when not.
pub fn can_run(tools: &[(&str, &str)]) -> bool {
    if engine().is_none() {
        return false;
    }
    tools_or_skip(tools)
}

/// The same for tests that need only `tools` (and no engine).
pub fn tools_or_skip(tools: &[(&str, &str)]) -> bool {
    for (cmd, package) in tools {
        if !have(cmd) {
            skip(&format!("`{cmd}` is not installed (apt-get install {package})"));
            return false;
        }
    }
    true
}

/// One host: a mount namespace with its own dockerd and (once served)
/// its own `ballast serve` as driver [`DRIVER`].
pub struct Host {
    pub name: String,
    /// The host's Docker engine (`ok`, `fails`, `docker` …).
    pub engine: &'static Engine,
    ballast: Option<Daemon>,
    /// The process that holds the namespace (`sleep infinity`).
    holder: Child,
    dockerd: Option<Child>,
    /// The engine's state (kept between runs, for the imported image).
    dir: String,
    /// The engine's sockets and the host's private plugin directory.
    run: String,
    /// What to unmount in the namespace when dropped.
    mounts: Mutex<Vec<PathBuf>>,
    /// The host's way to etcd, when it has one.
    proxy: Option<EtcdProxy>,
}

impl Host {
    /// A host whose ballast runs with `config`.
    pub fn start(name: &str, config: &str) -> Host {
        let mut host = Host::bare(name);
        host.serve(config);
        host
    }

    /// A host in the cluster of `etcd`, through a proxy of its own (see
    /// [`Host::partition`]): its ballast runs with `config` and a
    /// `[cluster]` section naming the proxy's endpoints and the host.
    pub fn in_cluster(name: &str, etcd: &Etcd, config: &str) -> Host {
        let mut host = Host::bare(name);
        host.join(etcd, config);
        host
    }

    /// Serves a bare host's ballast in the cluster of `etcd` (see
    /// [`Host::in_cluster`]), after what it mounted first.
    pub fn join(&mut self, etcd: &Etcd, config: &str) {
        let section = self.connect(etcd);
        self.serve(&format!("{config}\n{section}"));
    }

    /// Gives the host its own proxy to `etcd` (see [`Host::partition`])
    /// without serving anything: for a ballast the host runs otherwise
    /// (a managed plugin). The `[cluster]` section naming the proxy's
    /// endpoints and the host.
    pub fn connect(&mut self, etcd: &Etcd) -> String {
        let proxy = EtcdProxy::start(etcd);
        let section = cluster_section(&proxy.endpoints(), &self.name);
        self.proxy = Some(proxy);
        section
    }

    /// A host with its engine running and no ballast yet: mount what the
    /// daemon needs (e.g. [`Gluster::mount_in`]), then [`Host::serve`].
    pub fn bare(name: &str) -> Host {
        let dir = format!("/var/lib/ballast-host-{name}");
        let run = format!("/run/ballast-host-{name}");
        // An engine of a crashed earlier run, and the swarm it was in
        // (a fresh engine would try to rejoin it).
        stop_old_engine(&run);
        let _ = std::fs::remove_dir_all(format!("{dir}/data/swarm"));
        // What each host has of its own, over the machine's: Docker's
        // plugin directory (fresh: no socket of an earlier run), the
        // containerd directory, and /etc/docker, whose key.json is the
        // engine's identity (its ID in `docker info`).
        let private = [
            ("/run/docker/plugins", format!("{run}/plugins"), true),
            ("/run/containerd", format!("{run}/containerd"), true),
            ("/etc/docker", format!("{dir}/etc-docker"), false),
        ];
        for (path, own, fresh) in &private {
            if *fresh {
                let _ = std::fs::remove_dir_all(own);
            }
            std::fs::create_dir_all(own).unwrap();
            std::fs::create_dir_all(path).unwrap();
        }
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "unshare", "-m", "--propagation", "slave"])
            .args(["sleep", "infinity"]);
        let holder = spawn_until_exit(cmd);
        let engine: &'static Engine =
            Box::leak(Box::new(Engine { host: format!("unix://{run}/docker.sock") }));
        let mut host = Host {
            name: name.to_string(),
            engine,
            ballast: None,
            holder,
            dockerd: None,
            dir,
            run,
            mounts: Mutex::new(Vec::new()),
            proxy: None,
        };
        wait_for(&format!("the namespace of host {name}"), || {
            let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            ns(&host.holder.id().to_string()) != ns("self")
        });
        for (path, own, _) in &private {
            host.nsenter_ok(&["mount", "--bind", own, path]);
        }
        let pid = host.holder.id().to_string();
        let prefix = ["nsenter", "-t", &pid, "-m", "--"];
        host.dockerd = Some(spawn_dockerd_in(&prefix, engine, &host.dir, &host.run, &[]));
        // Swarm's bridge, left by a run that crashed in a swarm: the
        // engine recreates it at start, and both hosts would share it.
        if engine.docker(&["network", "inspect", "docker_gwbridge"]).status.success() {
            remove_gwbridge(&host);
        }
        host
    }

    /// Starts the host's ballast with `config`, its plugin socket at
    /// `/run/docker/plugins/ballast-cluster.sock` inside the namespace.
    pub fn serve(&mut self, config: &str) {
        assert!(self.ballast.is_none(), "host {} already serves", self.name);
        let pid = self.holder.id().to_string();
        let prefix = ["nsenter", "-t", &pid, "-m", "--"];
        // The socket's path outside: the same inode, so the test process
        // sees it too, and the daemon's start-up wait finds it.
        let socket = self.plugin_dir().join(format!("{DRIVER}.sock"));
        self.ballast = Some(Daemon::for_docker_in(&prefix, DRIVER, self.engine, socket, config));
    }

    /// `docker run --rm` of a shell command with `vol` at /data; its
    /// output.
    pub fn run(&self, vol: &str, script: &str) -> String {
        crate::docker::run(self.engine, vol, script)
    }

    /// The admin API's view of a volume here (`ballast volume inspect`).
    pub fn admin_volume(&self, vol: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["--json", "volume", "inspect", vol])).unwrap()
    }

    /// The ballast plugin socket, as seen from outside the namespace.
    pub fn socket(&self) -> PathBuf {
        self.plugin_dir().join(format!("{DRIVER}.sock"))
    }

    /// A Mount through the plugin socket, as Docker makes it: the
    /// mountpoint, or the error text when refused.
    pub fn mount(&self, vol: &str, id: &str) -> Result<String, String> {
        mount_at(&self.socket(), vol, id)
    }

    /// An Unmount through the plugin socket, as Docker makes it.
    pub fn unmount(&self, vol: &str, id: &str) {
        self.ballast()
            .call_ok("VolumeDriver.Unmount", &format!(r#"{{"Name":"{vol}","ID":"{id}"}}"#));
    }

    /// The host's ballast daemon (its admin socket, log, plugin calls).
    pub fn ballast(&self) -> &Daemon {
        self.ballast.as_ref().expect("the host serves no ballast yet")
    }

    pub fn ballast_mut(&mut self) -> &mut Daemon {
        self.ballast.as_mut().expect("the host serves no ballast yet")
    }

    /// The ballast CLI against this host's daemon; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.ballast().cli_ok(args)
    }

    /// Shorthands for the host's engine.
    pub fn ok(&self, args: &[&str]) -> String {
        self.engine.ok(args)
    }

    pub fn fails(&self, args: &[&str]) -> String {
        self.engine.fails(args)
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.engine.docker(args)
    }

    /// `kill -9` of the host's ballast (its socket file stays).
    pub fn kill9_ballast(&mut self) {
        self.ballast_mut().kill9();
    }

    /// Starts the host's ballast again, on the same state and config.
    pub fn start_ballast(&mut self) {
        self.ballast_mut().start_again();
    }

    /// The namespace holder's pid (for `nsenter -t`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A directory of the host's that outlives the test (the engine's).
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(&self.dir)
    }

    /// What the host's `/run/docker/plugins` is, seen from outside.
    pub fn plugin_dir(&self) -> PathBuf {
        PathBuf::from(format!("{}/plugins", self.run))
    }

    /// Runs a command inside the host's mount namespace.
    pub fn nsenter(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-m", "--"])
            .args(args)
            .output()
            .expect("running nsenter")
    }

    /// The same, which must succeed; returns trimmed stdout.
    pub fn nsenter_ok(&self, args: &[&str]) -> String {
        let out = self.nsenter(args);
        assert!(
            out.status.success(),
            "in host {}: {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `sh -c script` inside the namespace, which must succeed.
    pub fn sh(&self, script: &str) -> String {
        self.nsenter_ok(&["sh", "-c", script])
    }

    /// Records a mount made in the namespace, for the drop to undo.
    pub fn note_mount(&self, dir: PathBuf) {
        self.mounts.lock().unwrap().push(dir);
    }

    /// The host's etcd proxy (of [`Host::in_cluster`]).
    pub fn proxy(&self) -> &EtcdProxy {
        self.proxy.as_ref().expect("the host is not in a cluster")
    }

    /// Cuts this host (alone) off etcd; see [`EtcdProxy::partition`].
    pub fn partition(&self) {
        self.proxy().partition();
    }

    pub fn heal(&self) {
        self.proxy().heal();
    }

    fn stop_dockerd(&mut self) {
        if let Some(child) = self.dockerd.take() {
            stop_engine(child);
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(d) = &mut self.ballast {
            // While the daemon answers: a volume Docker still records
            // would make the next run's engine ask a dead driver.
            if d.pid().is_some() {
                let all = self.engine.docker(&["ps", "-aq"]);
                for c in String::from_utf8_lossy(&all.stdout).lines() {
                    self.engine.docker(&["rm", "-f", c]);
                }
                self.engine.clean(DRIVER);
            }
            d.terminate();
        }
        self.stop_dockerd();
        for dir in self.mounts.lock().unwrap().drain(..).rev() {
            let _ = self.nsenter(&["umount", "-l", dir.to_str().unwrap()]);
            let _ = std::fs::remove_dir(&dir);
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The lease TTL of the hosts' daemons.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// The `[cluster]` section of a host's configuration.
pub fn cluster_section(endpoints: &[String], node: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    format!(
        "[cluster]\netcd = [{}]\nnode = {node:?}\nlease_ttl = \"{}s\"\nmount_wait = \"3s\"\n",
        list.join(", "),
        LEASE_TTL.as_secs()
    )
}

/// Polls `cond` every 100 ms until it holds; fails after 90 s (starts on
/// a loaded machine are slow).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes swarm's `docker_gwbridge` network from a host's engine, and its
/// interface, which the hosts would otherwise share (one network
/// namespace).
fn remove_gwbridge(host: &Host) {
    host.docker(&["network", "rm", "docker_gwbridge"]);
    let _ = Command::new("ip").args(["link", "del", "docker_gwbridge"]).output();
}

/// Two engines in one swarm: A the manager, B a worker, over loopback.
/// Both leave when dropped.
pub struct Swarm<'h> {
    pub manager: &'h Host,
    pub worker: &'h Host,
}

/// Makes A a swarm manager and B a worker of it, over loopback: A on
/// 127.0.0.1, B on 127.0.0.2 (all of 127/8 is loopback on Linux), each on
/// a free port (not swarm's usual 2377, which a swarm of the machine may
/// hold). Two addresses because each engine's network agent (gossip for
/// overlay networks) listens on port 7946 of its advertise address,
/// which no flag moves: on one address B's agent fails to start (`bind:
/// address already in use` in its log), though `docker node ls` would
/// still show both nodes ready.
pub fn swarm_init<'h>(a: &'h Host, b: &'h Host) -> Swarm<'h> {
    let ports = etcd::free_ports(2);
    let (at_a, at_b) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.2:{}", ports[1]));
    a.ok(&["swarm", "init", "--listen-addr", &at_a, "--advertise-addr", &at_a]);
    let swarm = Swarm { manager: a, worker: b };
    let token = a.ok(&["swarm", "join-token", "-q", "worker"]);
    b.ok(&[
        "swarm",
        "join",
        "--listen-addr",
        &at_b,
        "--advertise-addr",
        &at_b,
        "--token",
        &token,
        &at_a,
    ]);
    for host in [a, b] {
        if host.docker(&["network", "inspect", "docker_gwbridge"]).status.success() {
            remove_gwbridge(host);
        }
    }
    swarm
}

impl Drop for Swarm<'_> {
    fn drop(&mut self) {
        for host in [self.worker, self.manager] {
            host.docker(&["swarm", "leave", "--force"]);
            remove_gwbridge(host);
        }
    }
}

/// A Mount through the plugin socket at `socket` (of [`Host::socket`]),
/// usable from another thread: the mountpoint, or the error text.
pub fn mount_at(socket: &Path, vol: &str, id: &str) -> Result<String, String> {
    let body = format!(r#"{{"Name":"{vol}","ID":"{id}"}}"#);
    let (_, v) = crate::harness::call(socket, "VolumeDriver.Mount", &body);
    match v["Err"].as_str() {
        Some(e) if !e.is_empty() => Err(e.to_string()),
        _ => Ok(v["Mountpoint"].as_str().unwrap_or_default().to_string()),
    }
}
