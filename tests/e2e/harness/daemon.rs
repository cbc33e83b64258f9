//! A private ballast daemon per test.

#[allow(unused_imports)]
use super::*;

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
pub(super) static PARKED: Mutex<Vec<(Child, tempfile::TempDir)>> = Mutex::new(Vec::new());

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

pub(super) fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("ballast.toml");
    std::fs::write(&path, text).unwrap();
    path
}
