//! The shared test harness: a private ballast daemon per test, a private
//! Docker engine shared by all tests, raw plugin-protocol calls, and
//! cleanup on drop.
//!
//! Docker remembers every plugin it has talked to, and once a plugin's
//! socket is gone it retries it for ~30 s on every unfiltered `docker
//! volume ls`, filtered or not, and on every lookup of an unknown
//! volume. So each test uses its own fixed driver name and removes its
//! volumes while its daemon still answers; daemons that Docker has seen
//! stay up until the test process exits (they get SIGTERM then, through
//! the parent-death signal); and each run starts with a freshly started
//! private engine that has forgotten the drivers of earlier runs.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where the private engine keeps its state (images stay between runs).
const ENGINE_DIR: &str = "/var/lib/ballast-test";
const ENGINE_RUN: &str = "/run/ballast-test";
pub const IMAGE: &str = "ballast-test:busybox";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Deterministic bytes that do not compress (one definition, shared
/// with the unit tests and benchmarks).
// Benches that include this file do not all use it.
#[allow(unused_imports)]
pub use ballast_test_support::noise;

/// Skips (prints why) or, under CI=true, fails.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("CI=true and the end-to-end tests cannot run: {why}");
    }
    eprintln!("SKIPPED end-to-end test: {why}");
}

/// Tests that only talk to the plugin socket need root (mount namespaces,
/// chown) but no Docker engine.
pub fn root_or_skip() -> bool {
    if is_root() {
        true
    } else {
        skip("these tests must run as root");
        false
    }
}

/// The private Docker engine, started once per run.
pub struct Engine {
    pub host: String,
}

static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();

/// The Docker engine, or `None` (after printing SKIPPED) when there is
/// none and we are not in CI.
pub fn engine() -> Option<&'static Engine> {
    ENGINE
        .get_or_init(|| {
            if !is_root() {
                skip("a private Docker engine needs root");
                return None;
            }
            for cmd in ["docker", "dockerd"] {
                if !have(cmd) {
                    skip(&format!(
                        "`{cmd}` is not installed (apt-get install docker.io busybox-static)"
                    ));
                    return None;
                }
            }
            Some(start_engine())
        })
        .as_ref()
}

fn start_engine() -> Engine {
    let engine = Engine { host: format!("unix://{ENGINE_RUN}/docker.sock") };
    stop_old_engine(ENGINE_RUN);
    remove_stale_plugin_sockets();
    let child = spawn_dockerd(&engine, ENGINE_DIR, ENGINE_RUN, &[]);
    PARKED_ENGINE.lock().unwrap().replace(child);
    engine
}

/// Starts a dockerd with its state in `dir` and `run` (and `extra` flags)
/// living as long as this test process, and waits until it answers with
/// the busybox test image in place.
fn spawn_dockerd(engine: &Engine, dir: &str, run: &str, extra: &[&str]) -> Child {
    spawn_dockerd_in(&[], engine, dir, run, extra)
}

/// The same, with `prefix` before dockerd's command (e.g. `nsenter -t PID
/// -m --`, to start it in another mount namespace).
pub fn spawn_dockerd_in(
    prefix: &[&str],
    engine: &Engine,
    dir: &str,
    run: &str,
    extra: &[&str],
) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir_all(run).unwrap();
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(format!("{dir}/dockerd.log"))
        .unwrap();
    // Like the ballast daemons, the engine lives as long as this test
    // process (see `spawn_until_exit`).
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "TERM", "--"]);
    cmd.args(prefix);
    cmd.args([
        "dockerd",
        "--data-root",
        &format!("{dir}/data"),
        "--exec-root",
        &format!("{run}/exec"),
        "--pidfile",
        &format!("{run}/docker.pid"),
        "-H",
        &engine.host,
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
    ]);
    cmd.args(extra);
    cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    let child = spawn_until_exit(cmd);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !engine.answers() {
        assert!(
            Instant::now() < deadline,
            "dockerd did not answer within 90 s; see {dir}/dockerd.log"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    if !engine.docker(&["image", "inspect", IMAGE]).status.success() {
        import_busybox(engine);
    }
    child
}

/// A second private engine that a test may stop and start again (the
/// shared one must stay up for the other tests).
pub struct OwnEngine {
    pub engine: &'static Engine,
    dir: String,
    run: String,
    extra: Vec<&'static str>,
    child: Option<Child>,
}

impl OwnEngine {
    pub fn start(name: &str, extra: &[&'static str]) -> OwnEngine {
        let run = format!("/run/ballast-{name}");
        let engine: &'static Engine =
            Box::leak(Box::new(Engine { host: format!("unix://{run}/docker.sock") }));
        let dir = format!("/var/lib/ballast-{name}");
        stop_old_engine(&run);
        let child = spawn_dockerd(engine, &dir, &run, extra);
        OwnEngine { engine, dir, run, extra: extra.to_vec(), child: Some(child) }
    }

    /// The engine's own directory (its data root is `data` in it), which
    /// outlives the test.
    pub fn dir(&self) -> &Path {
        Path::new(&self.dir)
    }

    /// Stops dockerd (SIGTERM, as `systemctl restart docker` does) and
    /// starts it again on the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn_dockerd(self.engine, &self.dir, &self.run, &self.extra));
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_engine(child);
        }
    }
}

/// Stops a dockerd as `systemctl stop docker` does (SIGTERM), killing it
/// if it is not gone within 60 s.
pub fn stop_engine(mut child: Child) {
    let pid = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
}

impl Drop for OwnEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The engine process, kept so that it is not a zombie-in-waiting.
static PARKED_ENGINE: Mutex<Option<Child>> = Mutex::new(None);

/// Stops the engine an earlier run left, so that this run's engine knows
/// no dead drivers.
pub fn stop_old_engine(run: &str) {
    let pidfile = format!("{run}/docker.pid");
    let Some(pid) =
        std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while rustix::process::test_kill_process(pid).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sockets of test daemons that died without cleaning up: Docker would
/// try each of them for 30 s.
fn remove_stale_plugin_sockets() {
    let Ok(dir) = std::fs::read_dir("/run/docker/plugins") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("ballast-e2e-") && UnixStream::connect(entry.path()).is_err() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Builds the busybox test image offline from the host's busybox.
fn import_busybox(engine: &Engine) {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists());
    let busybox = busybox.expect("busybox is not installed (apt-get install busybox-static)");
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for name in String::from_utf8_lossy(&list.stdout).lines() {
        if name != "busybox" && !name.is_empty() {
            std::os::unix::fs::symlink("busybox", bin.join(name)).unwrap();
        }
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C {} -c . | docker import - {IMAGE}", root.path().display()))
        .env("DOCKER_HOST", &engine.host)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "importing the busybox image failed");
}

impl Engine {
    fn answers(&self) -> bool {
        self.docker(&["version", "--format", "{{.Server.Version}}"]).status.success()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        claim_names(&self.host, args);
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .output()
            .expect("running docker")
    }

    /// Runs docker and returns its trimmed stdout; panics with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs docker expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(!out.status.success(), "docker {} should have failed", args.join(" "));
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `docker volume inspect` of one volume as JSON.
    pub fn inspect(&self, vol: &str) -> Value {
        let out = self.ok(&["volume", "inspect", vol]);
        let mut all: Value = serde_json::from_str(&out).unwrap();
        all[0].take()
    }

    /// Names of the volumes of one driver.
    pub fn volumes(&self, driver: &str) -> Vec<String> {
        let out = self.ok(&["volume", "ls", "-q", "--filter", &format!("driver={driver}")]);
        out.lines().map(str::to_string).collect()
    }

    /// Removes the containers and volumes a test left with this driver.
    pub fn clean(&self, driver: &str) {
        let containers =
            self.ok(&["ps", "-aq", "--filter", &format!("label=ballast-test={driver}")]);
        for c in containers.lines() {
            self.docker(&["rm", "-f", c]);
        }
        for v in self.volumes(driver) {
            self.docker(&["volume", "rm", "-f", &v]);
        }
    }
}

/// Which test uses each name (volume, container, plugin alias) in each
/// engine. All tests share one engine, and a name two tests use makes one
/// of them fail or not depending on the order they run in, which a fresh
/// clone finds and a warm machine hides.
static NAMES: Mutex<BTreeMap<(String, String), String>> = Mutex::new(BTreeMap::new());

/// Records the names a docker command makes, for the test running it (the
/// test thread's name), and fails the test when another test used one.
pub fn claim_names(host: &str, args: &[&str]) {
    for name in names_made(args) {
        claim(host, &name);
    }
}

/// Records one name for the running test (see `claim_names`).
pub fn claim(host: &str, name: &str) {
    // Threads a test spawns have no name; the test's own thread has it.
    let Some(test) = std::thread::current().name().map(str::to_string) else { return };
    if test == "main" {
        return;
    }
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let owner = names.entry((host.to_string(), name.to_string())).or_insert_with(|| test.clone());
    assert!(
        *owner == test,
        "the name {name:?} is used by two tests in one engine ({owner} and {test}): \
         give each test names of its own"
    );
}

/// The names a docker command makes: the volume of `volume create`, the
/// `--name` and named `-v`/`--mount` volumes of `run` and `create`, the
/// alias of `plugin install`.
fn names_made(args: &[&str]) -> Vec<String> {
    let mut made = Vec::new();
    match args {
        ["volume", "create", .., last] if !last.starts_with('-') => made.push(last.to_string()),
        ["run" | "create", rest @ ..] => {
            // Scans past the image too: the tests' commands never pass
            // these flags to the container's program.
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                let value = |it: &mut std::slice::Iter<&str>| it.next().map(|v| v.to_string());
                match *arg {
                    "--name" => made.extend(value(&mut it)),
                    "-v" | "--volume" => {
                        let spec = value(&mut it).unwrap_or_default();
                        let source = spec.split(':').next().unwrap_or_default();
                        if spec.contains(':') && !source.is_empty() && !source.starts_with('/') {
                            made.push(source.to_string());
                        }
                    }
                    "--mount" => {
                        let spec = value(&mut it).unwrap_or_default();
                        let fields: Vec<&str> = spec.split(',').collect();
                        if !fields.contains(&"type=bind") {
                            made.extend(
                                fields
                                    .iter()
                                    .find_map(|f| {
                                        f.strip_prefix("source=").or_else(|| f.strip_prefix("src="))
                                    })
                                    .map(str::to_string),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        ["plugin", "install", rest @ ..] => {
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                if *arg == "--alias" {
                    made.extend(it.next().map(|v| v.to_string()));
                }
            }
        }
        _ => {}
    }
    made
}

/// A private ballast daemon.
pub struct Daemon {
    pub driver: String,
    pub dir: tempfile::TempDir,
    pub plugin_socket: PathBuf,
    pub admin_socket: PathBuf,
    config: Option<PathBuf>,
    /// More `serve` flags (e.g. `--admin-listen`).
    pub extra_args: Vec<String>,
    /// A soft open-files limit to start with, as a service manager might
    /// set it (the hard limit stays).
    soft_nofile: Option<u64>,
    /// Words before the daemon's command (e.g. `nsenter -t PID -m --`).
    prefix: Vec<String>,
    child: Option<Child>,
    engine: Option<&'static Engine>,
}

impl Daemon {
    /// Starts a daemon whose plugin socket is only in the test's directory
    /// (Docker never sees it).
    pub fn private(name: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let plugin_socket = dir.path().join(format!("{name}.sock"));
        Daemon::start(name, dir, plugin_socket, None, None, &[])
    }

    /// A private daemon with a config file.
    pub fn private_with(name: &str, config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let plugin_socket = dir.path().join(format!("{name}.sock"));
        let config = write_config(&dir, config);
        Daemon::start(name, dir, plugin_socket, Some(config), None, &[])
    }

    /// Starts a daemon that Docker finds as driver `name`.
    pub fn for_docker(name: &str, engine: &'static Engine) -> Daemon {
        Daemon::for_docker_with(name, engine, None)
    }

    pub fn for_docker_with(name: &str, engine: &'static Engine, config: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let plugin_socket = PathBuf::from(format!("/run/docker/plugins/{name}.sock"));
        let config = config.map(|text| write_config(&dir, text));
        let d = Daemon::start(name, dir, plugin_socket, config, Some(engine), &[]);
        // A crashed earlier run may have left Docker records for this
        // driver; our Remove of an unknown volume succeeds, so they go.
        engine.clean(name);
        d
    }

    /// A daemon for `engine` with its plugin socket at `plugin_socket`,
    /// started with `prefix` before its command (e.g. `nsenter -t PID -m
    /// --`, to serve an engine in another mount namespace).
    pub fn for_docker_in(
        prefix: &[&str],
        name: &str,
        engine: &'static Engine,
        plugin_socket: PathBuf,
        config: &str,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(&dir, config);
        let d = Daemon::start(name, dir, plugin_socket, Some(config), Some(engine), prefix);
        engine.clean(name);
        d
    }

    fn start(
        name: &str,
        dir: tempfile::TempDir,
        plugin_socket: PathBuf,
        config: Option<PathBuf>,
        engine: Option<&'static Engine>,
        prefix: &[&str],
    ) -> Daemon {
        let admin_socket = dir.path().join("admin.sock");
        let mut d = Daemon {
            driver: name.to_string(),
            dir,
            plugin_socket,
            admin_socket,
            config,
            extra_args: Vec::new(),
            soft_nofile: None,
            prefix: prefix.iter().map(|p| p.to_string()).collect(),
            child: None,
            engine,
        };
        d.spawn();
        d
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn spawn(&mut self) {
        // setpriv asks the kernel to SIGTERM the daemon when its parent (the
        // spawner thread, which lives as long as this process) is gone.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--"]).args(&self.prefix);
        if let Some(soft) = self.soft_nofile {
            cmd.arg("prlimit").arg(format!("--nofile={soft}:")).arg("--");
        }
        cmd.args([env!("CARGO_BIN_EXE_ballast"), "serve"])
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--plugin-socket")
            .arg(&self.plugin_socket)
            .arg("--admin-socket")
            .arg(&self.admin_socket)
            .env("RUST_LOG", "debug")
            .env_remove("BALLAST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("log"))
                    .unwrap(),
            );
        cmd.args(&self.extra_args);
        // The daemon asks Docker which containers hold a volume in use:
        // a daemon for the private engine asks that engine, others none.
        match self.engine {
            Some(engine) => cmd.env("DOCKER_HOST", &engine.host),
            None => cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        };
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        self.child = Some(spawn_until_exit(cmd));
        // Generous: a busy machine can take long to schedule a start-up.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // Nothing left for Drop to stop.
                self.child = None;
                panic!("ballast exited at start ({status}): {}", self.log());
            }
            if UnixStream::connect(&self.plugin_socket).is_ok()
                && UnixStream::connect(&self.admin_socket).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "ballast did not open its sockets: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id while it runs (setpriv execs it in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the daemon in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid().unwrap()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// `kill -9`: nothing gets a chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ballast did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.terminate();
        self.spawn();
    }

    /// Starts the daemon again after `kill9` or `terminate`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    /// One plugin-protocol call, exactly as Docker makes it: POST, no
    /// Content-Type.
    pub fn call(&self, method: &str, body: &str) -> (u16, Value) {
        call(&self.plugin_socket, method, body)
    }

    /// Plugin call that must succeed; returns the body.
    pub fn call_ok(&self, method: &str, body: &str) -> Value {
        let (status, v) = self.call(method, body);
        assert_eq!(status, 200, "{method} {body}: {v}");
        assert!(v.get("Err").is_none_or(|e| e.as_str() == Some("")), "{method}: {v}");
        v
    }

    /// Plugin call that must fail with `{"Err"}`; returns the message.
    pub fn call_err(&self, method: &str, body: &str) -> String {
        let (status, v) = self.call(method, body);
        assert_ne!(status, 200, "{method} {body} should fail: {v}");
        let err =
            v["Err"].as_str().unwrap_or_else(|| panic!("{method}: no Err in {v}")).to_string();
        assert!(!err.is_empty());
        err
    }

    /// Names the daemon lists.
    pub fn names(&self) -> Vec<String> {
        let v = self.call_ok("VolumeDriver.List", "");
        v["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Name"].as_str().unwrap().to_string())
            .collect()
    }

    /// A daemon with a config file and more `serve` flags.
    pub fn private_with_args(name: &str, config: &str, args: &[&str]) -> Daemon {
        Daemon::private_with_args_and_nofile(name, config, args, None)
    }

    /// The same, started with a soft open-files limit of `soft_nofile`.
    pub fn private_with_args_and_nofile(
        name: &str,
        config: &str,
        args: &[&str],
        soft_nofile: Option<u64>,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let plugin_socket = dir.path().join(format!("{name}.sock"));
        let config = write_config(&dir, config);
        let mut d = Daemon {
            driver: name.to_string(),
            admin_socket: dir.path().join("admin.sock"),
            dir,
            plugin_socket,
            config: Some(config),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            soft_nofile,
            prefix: Vec::new(),
            child: None,
            engine: None,
        };
        d.spawn();
        d
    }

    /// One admin-endpoint request; returns status and JSON body.
    pub fn admin(&self, verb: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let (status, _, text) = Conn::new(&self.admin_socket).request(verb, path, &body);
        (
            status,
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{verb} {path}: not JSON ({e}): {text}")),
        )
    }

    /// An admin request that must answer `status`; returns the body.
    pub fn admin_ok(&self, verb: &str, path: &str, body: Value, status: u16) -> Value {
        let (got, v) = self.admin(verb, path, body);
        assert_eq!(got, status, "{verb} {path}: {v}");
        v
    }

    /// Polls a resource until it stops transitioning.
    pub fn settle(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.admin_ok("GET", path, Value::Null, 200);
            if v["transitioning"] != "yes" {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} still transitioning: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the `ballast` CLI against this daemon's admin socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ballast"))
            .arg("--admin")
            .arg(format!("unix://{}", self.admin_socket.display()))
            .args(args)
            .env_remove("BALLAST_ADMIN")
            .output()
            .expect("running the ballast CLI")
    }

    /// The CLI must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "ballast {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Takes a snapshot of volume `id` through the admin API and waits
    /// until it is created; returns the snapshot's id.
    pub fn snapshot(&self, id: &str, name: &str) -> String {
        let path = format!("/v1/volumes/{id}?action=snapshot");
        let s = self.admin_ok("POST", &path, serde_json::json!({ "name": name }), 202);
        let sid = s["id"].as_str().unwrap().to_string();
        let s = self.settle(&format!("/v1/snapshots/{sid}"));
        assert_eq!(s["state"], "created", "{s}");
        sid
    }

    /// The admin id (`1v…`) of a volume.
    pub fn id_of(&self, name: &str) -> String {
        let v = self.admin_ok("GET", &format!("/v1/volumes/{name}"), Value::Null, 200);
        v["id"].as_str().unwrap().to_string()
    }

    pub fn get(&self, name: &str) -> Value {
        self.call_ok("VolumeDriver.Get", &serde_json::json!({ "Name": name }).to_string())["Volume"]
            .take()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- ballast log ({}) ---\n{}", self.driver, self.log());
        }
        match (self.engine, self.child.take()) {
            (Some(engine), Some(child)) => {
                engine.clean(&self.driver);
                // Docker knows this driver now: keep it answering until the
                // process exits (see the module comment).
                let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
                PARKED.lock().unwrap().push((child, dir));
            }
            (None, Some(child)) => {
                self.child = Some(child);
                self.terminate();
            }
            (_, None) => {}
        }
    }
}

/// Daemons Docker has seen, kept with their state until the process exits.
static PARKED: Mutex<Vec<(Child, tempfile::TempDir)>> = Mutex::new(Vec::new());

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns from one thread that lives as long as the test process, so that
/// the parent-death signal fires when the process exits and not when the
/// test's own thread ends.
pub fn spawn_until_exit(cmd: Command) -> Child {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner.lock().unwrap().send((cmd, tx)).unwrap();
    rx.recv().unwrap().expect("spawning a test daemon")
}

/// Polls `cond` every 50 ms until it holds; fails after 30 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ballast serve` with `args`, and its state and sockets in `dir`
/// where `args` does not say otherwise, expecting start-up to fail:
/// asserts the exit status and that no socket was left in `dir`, and
/// returns stderr.
pub fn serve_must_fail(dir: &Path, args: &[&std::ffi::OsStr], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ballast"));
    cmd.arg("serve").args(args);
    for (flag, default) in
        [("--state-dir", "state"), ("--plugin-socket", "p.sock"), ("--admin-socket", "a.sock")]
    {
        if !args.iter().any(|a| *a == flag) {
            cmd.arg(flag).arg(dir.join(default));
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "start-up should have failed");
    assert!(!dir.join("p.sock").exists() && !dir.join("a.sock").exists(), "nothing half-started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--config FILE` with `text` written to `dir`/`name`.
pub fn config_args(dir: &Path, name: &str, text: &str) -> Vec<std::ffi::OsString> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    vec!["--config".into(), path.into()]
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("ballast.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A keep-alive HTTP/1.1 connection to a Unix socket, speaking like
/// Docker's plugin client (no Content-Type).
pub struct Conn {
    stream: std::io::BufReader<UnixStream>,
}

impl Conn {
    pub fn new(socket: &Path) -> Conn {
        let s = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connecting {}: {e}", socket.display()));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn { stream: std::io::BufReader::new(s) }
    }

    /// Sends one request and reads one response: status, headers, body.
    pub fn request(&mut self, verb: &str, path: &str, body: &str) -> (u16, String, String) {
        write!(
            self.stream.get_mut(),
            "{verb} {path} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
             Content-Length: {}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (status, head, body) =
            read_response(&mut self.stream).expect("connection closed mid-response");
        (status, head, String::from_utf8(body).unwrap())
    }

    /// A plugin-protocol call; checks the media type and parses the body.
    pub fn call(&mut self, method: &str, body: &str) -> (u16, Value) {
        let (status, head, body) = self.request("POST", &format!("/{method}"), body);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/vnd.docker.plugins.v1.2+json"),
            "{method}: missing plugin media type in {head}"
        );
        (
            status,
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{method}: body is not JSON ({e}): {body}")),
        )
    }
}

/// One plugin-protocol call on a fresh connection.
pub fn call(socket: &Path, method: &str, body: &str) -> (u16, Value) {
    Conn::new(socket).call(method, body)
}

/// Reads one HTTP/1.1 response that has a Content-Length: status, head
/// and body; `None` when the connection ends before the response begins.
fn read_response(r: &mut impl BufRead) -> Option<(u16, String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            assert!(head.is_empty(), "connection closed mid-response: {head}");
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    Some((status, head, body))
}

/// The access key and secret key of [`Daemon::private_with_tcp`].
pub const ACCESS_KEY: &str = "ops";
pub const SECRET_KEY: &str = "s3cr3t-key";

impl Daemon {
    /// A private daemon that also serves the admin API on a free loopback
    /// TCP port, with basic auth by [`ACCESS_KEY`] and [`SECRET_KEY`];
    /// `config` is the rest of its configuration. Returns it and a client
    /// of that port.
    pub fn private_with_tcp(name: &str, config: &str) -> (Daemon, Http) {
        let config = format!(
            "{config}\n[admin]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n"
        );
        let d = Daemon::private_with_args(name, &config, &["--admin-listen", "127.0.0.1:0"]);
        let http = Http::new(d.tcp_admin_addr(), ACCESS_KEY, SECRET_KEY);
        (d, http)
    }

    /// Where the TCP admin listener is (from the log: it may have been
    /// asked for port 0).
    pub fn tcp_admin_addr(&self) -> SocketAddr {
        let find = |log: &str| -> Option<SocketAddr> {
            let line = log.lines().find(|l| l.contains("admin endpoint on TCP"))?;
            line.split("addr=").nth(1)?.split_whitespace().next()?.parse().ok()
        };
        wait_until("the TCP admin listener", || find(&self.log()).is_some());
        find(&self.log()).unwrap()
    }
}

/// An answer over TCP: status, head and body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A keep-alive HTTP/1.1 client of the TCP admin listener, talking as
/// curl or a Rancher client library does: basic auth on every request,
/// absolute URLs (links are followed as given, and each must lead back
/// to the listener), and every answer checked against the spec.
pub struct Http {
    addr: SocketAddr,
    authorization: String,
    conn: Option<std::io::BufReader<TcpStream>>,
}

impl Http {
    pub fn new(addr: SocketAddr, access_key: &str, secret_key: &str) -> Http {
        use base64::Engine;
        let pair = format!("{access_key}:{secret_key}");
        let authorization =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        Http { addr, authorization, conn: None }
    }

    /// What every link of this listener starts with.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends one request to the absolute `url` with `headers` and `body`
    /// (a Content-Length when there is a body or the method takes one, as
    /// curl does); returns the answer unchecked.
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let base = self.base();
        let target = url.strip_prefix(&base).unwrap_or_else(|| panic!("{url} is not on {base}"));
        let target = if target.is_empty() { "/" } else { target };
        assert!(target.starts_with('/'), "{url} is not on {base}");
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
             User-Agent: ballast-e2e\r\nAccept: */*\r\n",
            self.addr, self.authorization
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        // A kept-alive connection that the server closed meanwhile ends
        // before any answer: then once more, on a new connection.
        for _ in 0..2 {
            let reused = self.conn.is_some();
            let conn = self.conn.get_or_insert_with(|| {
                let s = TcpStream::connect(self.addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                std::io::BufReader::new(s)
            });
            let answer = conn.get_mut().write_all(&request).ok().and_then(|()| read_response(conn));
            let Some((status, head, body)) = answer else {
                self.conn = None;
                assert!(reused, "{method} {url}: the connection closed without an answer");
                continue;
            };
            let answer = Answer { status, head, body: String::from_utf8(body).unwrap() };
            if answer.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
                self.conn = None;
            }
            return answer;
        }
        panic!("{method} {url}: no answer on a new connection either");
    }

    /// Checks an answer against the spec: JSON, `X-API-Schemas` naming
    /// this listener's schemas, and on a failure an error resource with
    /// `type`, `status`, `code`, `message` and `detail`. Returns the body.
    pub fn spec_body(&self, what: &str, a: &Answer) -> Value {
        let schemas = format!("{}/v1/schemas", self.base());
        assert_eq!(a.header("x-api-schemas"), Some(schemas.as_str()), "{what}: {}", a.head);
        let json = a.header("content-type").is_some_and(|t| t.starts_with("application/json"));
        assert!(json, "{what}: not JSON: {}", a.head);
        let v: Value = serde_json::from_str(&a.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", a.body));
        if a.status >= 400 {
            assert_eq!(
                (v["type"].as_str(), v["status"].as_u64()),
                (Some("error"), Some(a.status.into())),
                "{what}: {v}"
            );
            for key in ["code", "message"] {
                assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "{what}: no {key}: {v}");
            }
            assert!(v["detail"].is_string(), "{what}: no detail: {v}");
        }
        v
    }

    /// A request with a JSON body (or none), its answer checked by
    /// [`Http::spec_body`]: the status and the body.
    pub fn call(&mut self, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let json = [("Content-Type", "application/json")];
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &json };
        let a = self.send(method, url, headers, body.as_bytes());
        let v = self.spec_body(&format!("{method} {url}"), &a);
        (a.status, v)
    }

    /// A call that must answer `status`; the body.
    pub fn ok(&mut self, method: &str, url: &str, body: Option<&Value>, status: u16) -> Value {
        let (got, v) = self.call(method, url, body);
        assert_eq!(got, status, "{method} {url}: {v}");
        v
    }

    pub fn get(&mut self, url: &str) -> Value {
        self.ok("GET", url, None, 200)
    }

    /// Polls the resource at `url` until it is no longer transitioning;
    /// returns it.
    pub fn settle(&mut self, url: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.get(url);
            if v["transitioning"] != "yes" {
                return v;
            }
            assert!(Instant::now() < deadline, "{url} still transitioning: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A scratch filesystem made for one test: an image file, formatted and
/// loop-mounted; unmounted (and so detached) on drop.
pub struct ScratchFs {
    pub mnt: PathBuf,
    /// Holds the image and the mountpoint; removed after the unmount.
    _dir: tempfile::TempDir,
}

impl ScratchFs {
    /// A btrfs filesystem of `mib` MiB, or `None` (after SKIPPED) when
    /// btrfs-progs is missing outside CI.
    pub fn btrfs(mib: u64) -> Option<ScratchFs> {
        ScratchFs::new("btrfs", "btrfs-progs", mib)
    }

    /// An xfs filesystem (with reflinks) of `mib` MiB.
    pub fn xfs(mib: u64) -> Option<ScratchFs> {
        ScratchFs::new("xfs", "xfsprogs", mib)
    }

    fn new(fs: &str, package: &str, mib: u64) -> Option<ScratchFs> {
        let mkfs = format!("mkfs.{fs}");
        if !have(&mkfs) {
            skip(&format!("{mkfs} is not installed (apt-get install {package})"));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
        let out = Command::new(&mkfs).arg("-q").arg(&img).output().unwrap();
        assert!(out.status.success(), "{mkfs}: {}", String::from_utf8_lossy(&out.stderr));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt).output().unwrap();
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
        Some(ScratchFs { mnt, _dir: dir })
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        // Lazy: a daemon parked until the process exits may still hold it.
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// A tmpfs of `mib` MiB at `dir/fs`, unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn new(dir: &Path, mib: u64) -> Tmpfs {
        let mnt = dir.join("fs");
        std::fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs");
        Tmpfs(mnt)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn the_names_a_docker_command_makes_are_the_ones_tests_must_not_share() {
    let made = |args: &[&str]| names_made(args);
    assert_eq!(made(&["volume", "create", "--driver", "d", "-o", "size=1M", "web"]), ["web"]);
    assert_eq!(
        made(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--name",
            "c1",
            "-v",
            "db:/data",
            "-v",
            "/host:/h",
            "--mount",
            "type=volume,src=logs,dst=/l",
            IMAGE,
            "sh",
            "-c",
            "true"
        ]),
        ["c1", "db", "logs"]
    );
    assert_eq!(made(&["plugin", "install", "--alias", "ballast-x", "r/b:1"]), ["ballast-x"]);
    assert!(made(&["volume", "rm", "web"]).is_empty());
}
