//! The private Docker engine every test shares, and the names tests
//! claim in it (no two tests may make the same one).

#[allow(unused_imports)]
use super::*;

/// The private Docker engine, started once per run.
pub struct Engine {
    pub host: String,
}

pub(super) static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();

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

pub(super) fn start_engine() -> Engine {
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
pub(super) fn spawn_dockerd(engine: &Engine, dir: &str, run: &str, extra: &[&str]) -> Child {
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
pub fn stop_engine(child: Child) {
    stop_child(child, Duration::from_secs(60));
}

/// Stops `child` with SIGTERM, as systemd does, and waits for its exit;
/// kills it if it is still there after `within`.
pub fn stop_child(mut child: Child, within: Duration) {
    let pid = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + within;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

impl Drop for OwnEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The engine process, kept so that it is not a zombie-in-waiting.
pub(super) static PARKED_ENGINE: Mutex<Option<Child>> = Mutex::new(None);

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
pub(super) fn remove_stale_plugin_sockets() {
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
pub(super) fn import_busybox(engine: &Engine) {
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
pub(super) static NAMES: Mutex<BTreeMap<(String, String), String>> = Mutex::new(BTreeMap::new());

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
pub(super) fn names_made(args: &[&str]) -> Vec<String> {
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
