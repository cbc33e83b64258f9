//! The Debian package, as an operator meets it: `plugin/deb` builds it
//! (from the binary under test), and it is installed with `dpkg -i` into
//! a clean Debian image running systemd, made offline from this host's
//! own packages (`debian-image`). The suite's engine then uses it through
//! the socket the package's units open: systemd's socket starts the
//! daemon on Docker's call. `dpkg -r` keeps every volume and says so, a
//! reinstall brings them back to Docker, and `dpkg -P` deletes the state.
//!
//! The container shares two host directories: its /run/docker/plugins
//! (the engine finds the plugin socket there through a link named after
//! this test's driver) and a pool directory at the same path on both
//! sides, so that the mountpoints the daemon returns are real on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Daemon, Engine, IMAGE, engine, skip, wait_until};

const DRIVER: &str = "ballast-e2e-deb";
const CONTAINER: &str = "ballast-e2e-deb";
const DEBIAN: &str = "ballast-test:debian";
const STATE: &str = "/var/lib/ballast";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `plugin/deb` on the binary under test; the package's path.
fn build_package() -> PathBuf {
    let out = Command::new(manifest().join("plugin/deb"))
        .env("BALLAST_BIN", env!("CARGO_BIN_EXE_ballast"))
        .output()
        .unwrap();
    assert!(out.status.success(), "plugin/deb: {}", String::from_utf8_lossy(&out.stderr));
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    manifest().join(path)
}

/// Runs `sh -c script` in the container; (success, stdout + stderr).
fn exec(script: &str) -> (bool, String) {
    let e = engine().unwrap();
    let out = e.docker(&["exec", CONTAINER, "sh", "-c", script]);
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn exec_ok(script: &str) -> String {
    let (ok, text) = exec(script);
    assert!(ok, "in the Debian container, `{script}` failed:\n{text}");
    text
}

/// The container with systemd as init, until dropped.
struct Machine {
    e: &'static Engine,
    link: PathBuf,
}

impl Machine {
    fn boot(e: &'static Engine, plugins: &Path, pool: &Path, package: &Path) -> Machine {
        let _ = e.docker(&["rm", "-f", CONTAINER]);
        let pkg_dir = package.parent().unwrap().display().to_string();
        // The host's docker CLI, to find `docker ballast` where it looks.
        let cli = Command::new("sh").args(["-c", "command -v docker"]).output().unwrap();
        let cli = String::from_utf8_lossy(&cli.stdout).trim().to_string();
        // systemd needs a writable cgroup tree and CAP_SYS_ADMIN; all
        // capabilities but the one this host withholds from dockerd.
        e.ok(&[
            "run",
            "-d",
            "-t",
            "--name",
            CONTAINER,
            "--network",
            "none",
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--cgroupns",
            "host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-e",
            "container=docker",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "-v",
            &format!("{}:/run/docker/plugins", plugins.display()),
            "-v",
            &format!("{0}:{0}", pool.display()),
            "-v",
            &format!("{pkg_dir}:/pkg:ro"),
            "-v",
            &format!("{cli}:/usr/bin/docker:ro"),
            DEBIAN,
        ]);
        let link = PathBuf::from(format!("/run/docker/plugins/{DRIVER}.sock"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(plugins.join("ballast.sock"), &link).unwrap();
        let machine = Machine { e, link };
        wait_until("systemd in the Debian container", || {
            let (_, state) = exec("systemctl is-system-running");
            matches!(state.trim(), "running" | "degraded")
        });
        machine
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.e.docker(&["rm", "-f", CONTAINER]);
        let _ = std::fs::remove_file(&self.link);
    }
}

fn install(package: &Path) -> String {
    let name = package.file_name().unwrap().to_string_lossy();
    exec_ok(&format!("dpkg -i /pkg/{name}"))
}

fn active(unit: &str) -> bool {
    exec(&format!("systemctl is-active --quiet {unit}")).0
}

#[test]
fn the_debian_package_installs_serves_docker_by_socket_activation_and_removes_cleanly() {
    let Some(e) = engine() else { return };
    if !Command::new("sh").args(["-c", "command -v cargo-deb"]).output().unwrap().status.success() {
        skip("cargo-deb is not installed (cargo install --locked cargo-deb)");
        return;
    }
    let package = build_package();
    let image = Command::new(manifest().join("tests/e2e/debian-image"))
        .arg(DEBIAN)
        .env("DOCKER_HOST", &e.host)
        .output()
        .unwrap();
    assert!(image.status.success(), "debian-image: {}", String::from_utf8_lossy(&image.stderr));

    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let pool = dir.path().join("pool");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&pool).unwrap();
    let machine = Machine::boot(e, &plugins, &pool, &package);

    // Installed: enabled and started, everything where Debian puts it.
    install(&package);
    for unit in ["ballast.socket", "ballast.service"] {
        assert_eq!(exec_ok(&format!("systemctl is-enabled {unit}")).trim(), "enabled");
        assert!(active(unit), "{unit} is not active after dpkg -i");
    }
    exec_ok(
        "test -x /usr/bin/ballast && test -f /usr/share/man/man1/ballast-volume-create.1.gz \
         && test -f /usr/share/bash-completion/completions/ballast \
         && test -f /usr/share/zsh/vendor-completions/_ballast \
         && test -f /usr/share/fish/vendor_completions.d/ballast.fish",
    );
    // The shipped config is all comments: the daemon runs on its defaults.
    let check = exec_ok("ballast config check");
    assert!(check.contains("valid") && check.contains("default pool: default"), "{check}");

    // The operator adds a pool Docker can reach, and restarts.
    exec_ok(&format!(
        "printf '\\n[[pool]]\\nname = \"shared\"\\nbackend = \"dir\"\\npath = \"{}\"\\ndefault = true\\n\
         \\n[[pool]]\\nname = \"local\"\\nbackend = \"dir\"\\n' >> /etc/ballast/ballast.toml \
         && systemctl restart ballast.service",
        pool.display()
    ));
    assert!(exec_ok("ballast config check").contains("default pool: shared"));

    // Used from Docker, through the socket systemd holds.
    e.ok(&["volume", "create", "--driver", DRIVER, "web"]);
    let run = |script: &str| {
        e.ok(&["run", "--rm", "--network", "none", "-v", "web:/data", IMAGE, "sh", "-c", script])
    };
    run("echo hello > /data/f");
    assert_eq!(run("cat /data/f"), "hello");
    let listed = exec_ok("ballast volume ls");
    assert!(listed.contains("web"), "{listed}");
    let listed = exec_ok("docker ballast volume ls");
    assert!(listed.contains("web"), "docker ballast: {listed}");
    exec_ok("ballast volume create inner -o pool=local");
    assert!(exec_ok(&format!("ls {STATE}/pools/local/volumes")).trim().starts_with('v'));

    // Socket activation: a stopped daemon is started by Docker's call.
    exec_ok("systemctl stop ballast.service");
    assert!(!active("ballast.service") && active("ballast.socket"));
    assert_eq!(e.inspect("web")["Driver"], DRIVER);
    assert!(active("ballast.service"), "Docker's call did not start the daemon");

    // Upgraded (dpkg -i over itself runs the upgrade scripts): the daemon
    // restarts on the new binary and the volume stays in use.
    let pid = || exec_ok("systemctl show -p MainPID --value ballast.service").trim().to_string();
    let before = pid();
    install(&package);
    assert!(active("ballast.service"));
    assert_ne!(pid(), before, "the upgrade did not restart the daemon");
    assert_eq!(run("cat /data/f"), "hello");

    // Removed: gone from systemd and Docker's socket directory, and
    // every volume kept, as the message says.
    let removed = exec_ok("dpkg -r ballast");
    assert!(removed.contains(&format!("kept in {STATE}")), "{removed}");
    assert!(!plugins.join("ballast.sock").exists(), "the plugin socket outlived the package");
    exec_ok(&format!(
        "! test -e /usr/bin/ballast && ! test -e /lib/systemd/system/ballast.service \
         && test -f {STATE}/ballast.db && test -f /etc/ballast/ballast.toml \
         && ls {STATE}/pools/local/volumes/v*"
    ));
    let kept = std::fs::read_dir(pool.join("volumes")).unwrap().count();
    assert_eq!(kept, 1, "the shared pool's volume is gone after dpkg -r");

    // Reinstalled: enabled again, and Docker finds the volume and its data.
    install(&package);
    assert!(active("ballast.service"));
    assert_eq!(run("cat /data/f"), "hello");
    e.ok(&["volume", "rm", "web"]);

    // Purged: the state goes, the pool configured elsewhere stays.
    let purged = exec_ok("dpkg -P ballast");
    assert!(purged.contains(&format!("deleted {STATE}")), "{purged}");
    exec_ok(&format!("! test -e {STATE} && ! test -e /etc/ballast"));
    assert!(pool.join("volumes").exists(), "the purge deleted a pool outside {STATE}");
    drop(machine);

    // Docker retries a vanished plugin on every `volume ls`: a daemon
    // answers for this driver until the tests end.
    drop(Daemon::for_docker(DRIVER, e));
}
