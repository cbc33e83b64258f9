//! ballast as a managed Docker plugin: `plugin/build` makes it, a local
//! registry (Debian's `docker-registry`) serves it, `docker plugin
//! install` takes it with settings, and it behaves as Docker expects of a
//! volume plugin through disable and enable, an upgrade and an engine
//! restart, with its data, snapshots and mount counts intact; its state
//! is in a host directory, so `docker plugin rm` and an install on the
//! same directory find it all again. On an engine of its own, so that
//! restarting it disturbs no other test.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::harness::{IMAGE, OwnEngine, root_or_skip, skip, wait_until};

/// A registry on loopback, stopped on drop.
pub(crate) struct Registry {
    child: Child,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A registry on a free port (tests that run side by side each start
    /// their own); `None` after a skip when it is not installed.
    pub(crate) fn start() -> Option<Registry> {
        if Command::new("sh")
            .args(["-c", "command -v docker-registry"])
            .output()
            .ok()?
            .stdout
            .is_empty()
        {
            skip("docker-registry is not installed (apt-get install docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the registry", || std::net::TcpStream::connect(&addr).is_ok());
        Some(Registry { child, addr, _dir: dir })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the plugin with `plugin/build` on the engine at `host` (the
/// tests' binary in it) and pushes it as `reference`, which the engine
/// then forgets: installs take it from the registry.
pub(crate) fn build_and_push(host: &str, reference: &str) {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin/build"))
        .arg(reference)
        .env("DOCKER_HOST", host)
        .env("BALLAST_BIN", env!("CARGO_BIN_EXE_ballast"))
        .output()
        .unwrap();
    assert!(out.status.success(), "plugin/build: {}", String::from_utf8_lossy(&out.stderr));
    docker_on(host, &["plugin", "push", reference]);
    docker_on(host, &["plugin", "rm", reference]);
}

/// `docker ARGS` on the engine at `host`, which must succeed; its stdout.
pub(crate) fn docker_on(host: &str, args: &[&str]) -> String {
    let out = Command::new("docker").args(args).env("DOCKER_HOST", host).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_managed_plugin_installs_from_a_registry_and_keeps_its_volumes() {
    if !root_or_skip() {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let mut own = OwnEngine::start("managed-plugin", &[]);
    let host = own.engine.host.clone();
    let docker = |args: &[&str]| docker_on(&host, args);
    // What an interrupted earlier run may have left on this engine.
    for leftover in [
        &["rm", "-f", "writer", "reader"][..],
        &["volume", "rm", "-f", "db"],
        &["plugin", "rm", "-f", "ballast-managed"],
    ] {
        let _ = Command::new("docker").args(leftover).env("DOCKER_HOST", &host).output();
    }
    // Build two versions and push them.
    let repo = format!("{}/ballast", registry.addr);
    for tag in ["1", "2"] {
        build_and_push(&host, &format!("{repo}:{tag}"));
    }

    // Install with settings: the state, the admin socket and the config
    // in host directories of the test's. Beside the engine, so that a
    // plugin a failed run left installed still finds them (and the
    // engine can start); emptied once that plugin is gone.
    let dir = own.dir().join("sources");
    let _ = std::fs::remove_dir_all(&dir);
    let (state, admin, conf, pools) =
        (dir.join("state"), dir.join("admin"), dir.join("conf"), dir.join("pools"));
    for d in [&state, &admin, &conf, &pools] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(conf.join("ballast.toml"), "[[pool]]\nname = \"fast\"\nbackend = \"dir\"\n")
        .unwrap();
    let settings = [
        format!("state.source={}", state.display()),
        format!("admin.source={}", admin.display()),
        format!("config.source={}", conf.display()),
        format!("pools.source={}", pools.display()),
    ];
    let driver = "ballast-managed";
    let install = |docker: &dyn Fn(&[&str]) -> String, tag: &str| {
        let mut install = vec!["plugin", "install", "--grant-all-permissions", "--alias", driver];
        let reference = format!("{repo}:{tag}");
        install.push(&reference);
        install.extend(settings.iter().map(String::as_str));
        docker(&install);
    };
    install(&docker, "1");
    let cli = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
            .arg("--admin")
            .arg(format!("unix://{}", admin.join("admin.sock").display()))
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ballast {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let listed = cli(&["pool", "ls"]);
    assert!(listed.to_string().contains("\"fast\""), "the config mount is read: {listed}");

    // Docker's own expectations: create, inspect, list, two containers.
    docker(&["volume", "create", "--driver", driver, "-o", "pool=fast", "db"]);
    let v: Value = serde_json::from_str(&docker(&["volume", "inspect", "db"])).unwrap();
    assert_eq!(v[0]["Driver"], format!("{driver}:latest"));
    assert_eq!(v[0]["Status"]["pool"], "fast");
    assert!(docker(&["volume", "ls", "-q"]).lines().any(|l| l == "db"));
    let hold = |name: &str, cmd: &str| {
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-v",
            "db:/data",
            IMAGE,
            "sh",
            "-c",
            &format!("{cmd}; trap 'exit 0' TERM; sleep 600 & wait"),
        ])
    };
    hold("writer", "echo kept > /data/f");
    hold("reader", "true");
    let mounts = || cli(&["volume", "inspect", "db"])["mountCount"].clone();
    wait_until("two mounts", || mounts() == 2);
    // The data is in the state's host directory; Docker was handed a
    // bind of it in the propagated mount, named by the volume's id.
    let id = cli(&["volume", "inspect", "db"])["id"].as_str().unwrap().to_string();
    let data = state.join("pools/fast/volumes").join(id.replacen("1v", "v", 1)).join("f");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept\n");
    let plugin: Value = serde_json::from_str(&docker(&["plugin", "inspect", driver])).unwrap();
    let handed = own.dir().join("data/plugins").join(plugin[0]["Id"].as_str().unwrap());
    let handed = handed.join("propagated-mount").join(&id);
    assert_eq!(std::fs::read_to_string(handed.join("f")).unwrap(), "kept\n");
    cli(&["volume", "snapshot", "db", "--name", "before"]);

    // Disable and enable: the same volumes, snapshots and mounts.
    docker(&["plugin", "disable", "-f", driver]);
    docker(&["plugin", "enable", driver]);
    assert_eq!(mounts(), 2);
    assert_eq!(docker(&["exec", "reader", "cat", "/data/f"]), "kept");

    // Upgrade: Docker forgets the mounts' sources on upgrade, so they are
    // set again (README says so).
    docker(&["plugin", "disable", "-f", driver]);
    docker(&[
        "plugin",
        "upgrade",
        "--grant-all-permissions",
        "--skip-remote-check",
        driver,
        &format!("{repo}:2"),
    ]);
    let mut set = vec!["plugin", "set", driver];
    set.extend(settings.iter().map(String::as_str));
    docker(&set);
    docker(&["plugin", "enable", driver]);
    let info: Value = serde_json::from_str(&docker(&["plugin", "inspect", driver])).unwrap();
    assert_eq!(info[0]["PluginReference"], format!("{repo}:2"));
    assert_eq!(mounts(), 2);
    let snaps = cli(&["snapshot", "ls", "db"]);
    assert_eq!(snaps[0]["name"], "before", "{snaps}");
    docker(&["rm", "-f", "reader"]);
    wait_until("one mount", || mounts() == 1);

    // The engine restarts (as `systemctl restart docker` does): the plugin
    // comes back enabled and its volumes are listed again.
    own.restart();
    let host = own.engine.host.clone();
    let after = |args: &[&str]| docker_on(&host, args);
    wait_until("the plugin after the restart", || {
        Command::new("docker")
            .args(["volume", "ls", "-q"])
            .env("DOCKER_HOST", &host)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l == "db"))
    });
    let _ = after(&["rm", "-f", "writer"]);
    wait_until("no mounts", || mounts() == 0);
    let page =
        after(&["run", "--rm", "--network", "none", "-v", "db:/data", IMAGE, "cat", "/data/f"]);
    assert_eq!(page, "kept");

    // `docker plugin rm` deletes the plugin and its propagated mount, not
    // the state: installed again on the same host directory, the plugin
    // has the volume, its data and its snapshot. (`-f`: Docker still
    // counts the volume as a user of the plugin, and keeps its record.)
    after(&["plugin", "disable", "-f", driver]);
    after(&["plugin", "rm", "-f", driver]);
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept\n");
    install(&after, "2");
    assert_eq!(cli(&["volume", "inspect", "db"])["id"], id.as_str());
    let snaps = cli(&["snapshot", "ls", "db"]);
    assert_eq!(snaps[0]["name"], "before", "{snaps}");
    let page =
        after(&["run", "--rm", "--network", "none", "-v", "db:/data", IMAGE, "cat", "/data/f"]);
    assert_eq!(page, "kept");
    after(&["volume", "rm", "db"]);
    after(&["plugin", "disable", "-f", driver]);
    after(&["plugin", "rm", "-f", driver]);
    std::fs::remove_dir_all(&dir).unwrap();
}
