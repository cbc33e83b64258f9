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

use crate::harness::{Daemon, Engine, engine, skip, wait_until};

const DRIVER: &str = "ballast-e2e-deb";
const CONTAINER: &str = "ballast-e2e-deb";
/// The Docker volume this test makes; every name in the shared engine is
/// unique to one test (see `harness::claim_names`).
const VOL: &str = "deb-web";
const DEBIAN: &str = "ballast-test:debian";
const STATE: &str = "/var/lib/ballast";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `plugin/deb` on the binary under test, as package revision
/// `revision`, copied into `into`; the copy's path.
fn build_package(revision: u32, into: &Path) -> PathBuf {
    let out = Command::new(manifest().join("plugin/deb"))
        .env("BALLAST_BIN", env!("CARGO_BIN_EXE_ballast"))
        .env("BALLAST_DEB_REVISION", revision.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "plugin/deb: {}", String::from_utf8_lossy(&out.stderr));
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    // cargo-deb clears its output directory: keep each package aside.
    let kept = into.join(Path::new(&path).file_name().unwrap());
    std::fs::copy(manifest().join(path), &kept).unwrap();
    kept
}

/// Runs `sh -c script` in the container; (success, stdout + stderr).
fn exec(script: &str) -> (bool, String) {
    let e = engine().unwrap();
    // Bounded: a hung maintainer script or systemctl fails the test.
    let out = e.docker(&["exec", CONTAINER, "timeout", "300", "sh", "-c", script]);
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
    fn boot(e: &'static Engine, plugins: &Path, pool: &Path, packages: &Path) -> Machine {
        let _ = e.docker(&["rm", "-f", CONTAINER]);
        let pkg_dir = packages.display().to_string();
        // The host's docker CLI, to find `docker ballast` where it looks.
        let cli = Command::new("sh").args(["-c", "command -v docker"]).output().unwrap();
        let cli = String::from_utf8_lossy(&cli.stdout).trim().to_string();
        // systemd needs a writable cgroup tree and CAP_SYS_ADMIN: every
        // capability dockerd has (it cannot grant one it lacks).
        let mut drops = Vec::new();
        for cap in missing_capabilities() {
            drops.extend(["--cap-drop".to_string(), cap.to_string()]);
        }
        let drops: Vec<&str> = drops.iter().map(String::as_str).collect();
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
        ]
        .into_iter()
        .chain(drops)
        .chain([DEBIAN])
        .collect::<Vec<_>>());
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
        // Docker retries a vanished plugin on every `volume ls`: whatever
        // happened, a daemon answers for this driver until the tests end
        // (and removes the volumes Docker still lists for it).
        let e = self.e;
        let _ = std::panic::catch_unwind(move || drop(Daemon::for_docker(DRIVER, e)));
    }
}

/// The capabilities this process (and so the engine it started) lacks,
/// by Docker's names.
fn missing_capabilities() -> Vec<&'static str> {
    #[rustfmt::skip]
    const NAMES: [&str; 41] = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
        "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
        "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ];
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) == 0)
        .map(|(_, n)| *n)
        .collect()
}

fn install(package: &Path) -> String {
    let name = package.file_name().unwrap().to_string_lossy();
    exec_ok(&format!("dpkg -i /pkg/{name}"))
}

fn active(unit: &str) -> bool {
    exec(&format!("systemctl is-active --quiet {unit}")).0
}

/// systemd's id of the service's current run: a new one on each start.
fn invocation() -> String {
    exec_ok("systemctl show -p InvocationID --value ballast.service").trim().to_string()
}

#[test]
fn the_debian_package_installs_serves_docker_by_socket_activation_and_removes_cleanly() {
    let Some(e) = engine() else { return };
    if !Command::new("sh").args(["-c", "command -v cargo-deb"]).output().unwrap().status.success() {
        skip("cargo-deb is not installed (cargo install --locked cargo-deb)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    std::fs::create_dir_all(&packages).unwrap();
    let first = build_package(1, &packages);
    let second = build_package(2, &packages);
    let image = Command::new(manifest().join("tests/e2e/debian-image"))
        .arg(DEBIAN)
        .env("DOCKER_HOST", &e.host)
        .output()
        .unwrap();
    assert!(image.status.success(), "debian-image: {}", String::from_utf8_lossy(&image.stderr));

    let plugins = dir.path().join("plugins");
    let pool = dir.path().join("pool");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&pool).unwrap();
    let machine = Machine::boot(e, &plugins, &pool, &packages);

    installed_where_debian_puts_it(&first);
    configured_and_used_from_docker(e, &pool);
    upgraded_under_a_running_container(e, &second);
    removed_keeping_every_volume(e, &second, &plugins, &pool);
    purged_keeping_backup_passwords(&pool);
    drop(machine);
}

fn installed_where_debian_puts_it(package: &Path) {
    install(package);
    for unit in ["ballast.socket", "ballast.service"] {
        assert_eq!(exec_ok(&format!("systemctl is-enabled {unit}")).trim(), "enabled");
        assert!(active(unit), "{unit} is not active after dpkg -i");
    }
    exec_ok(
        "test -x /usr/bin/ballast && test -f /usr/share/man/man1/ballast-volume-create.1.gz \
         && test -f /usr/share/bash-completion/completions/ballast \
         && test -f /usr/share/zsh/vendor-completions/_ballast \
         && test -f /usr/share/fish/vendor_completions.d/ballast.fish \
         && test -f /usr/lib/tmpfiles.d/ballast.conf",
    );
    // The conffile may hold keys: root's alone. It sets nothing, and the
    // example of every key beside the docs passes the same check.
    assert_eq!(exec_ok("stat -c %a /etc/ballast/ballast.toml").trim(), "600");
    let check = exec_ok("ballast config check");
    assert!(check.contains("valid") && check.contains("default pool: default"), "{check}");
    exec_ok("ballast config check --config /usr/share/doc/ballast/ballast.toml.example");
    // Ordered before Docker, so that Docker stops first at shutdown.
    for unit in ["ballast.socket", "ballast.service"] {
        let before = exec_ok(&format!("systemctl show -p Before --value {unit}"));
        assert!(before.contains("docker.service"), "{unit} Before={before}");
    }
}

fn configured_and_used_from_docker(e: &Engine, pool: &Path) {
    // The operator adds a pool Docker can reach, a pool in the state
    // directory and a backup target, and restarts.
    exec_ok(&format!(
        "printf '\\n[[pool]]\\nname = \"shared\"\\nbackend = \"dir\"\\npath = \"{}\"\\ndefault = true\\n\
         \\n[[pool]]\\nname = \"local\"\\nbackend = \"dir\"\\n\
         \\n[[backup_target]]\\nname = \"nas\"\\nurl = \"file:///var/backups/ballast\"\\n' \
         >> /etc/ballast/ballast.toml && systemctl restart ballast.service",
        pool.display()
    ));
    assert!(exec_ok("ballast config check").contains("default pool: shared"));

    // Used from Docker, through the socket systemd holds.
    e.ok(&["volume", "create", "--driver", DRIVER, VOL]);
    run(e, "echo hello > /data/f");
    assert_eq!(run(e, "cat /data/f"), "hello");
    for cli in ["ballast", "docker ballast"] {
        let listed = exec_ok(&format!("{cli} volume ls"));
        assert!(listed.contains(VOL), "{cli}: {listed}");
    }
    exec_ok("ballast volume create inner -o pool=local && ballast backup create inner");
    assert!(exec_ok(&format!("ls {STATE}/pools/local/volumes")).trim().starts_with('v'));

    // Socket activation: a stopped daemon is started by Docker's call.
    exec_ok("systemctl stop ballast.service");
    let stopped = invocation();
    assert_eq!(e.inspect(VOL)["Driver"], DRIVER);
    assert!(active("ballast.service"), "Docker's call did not start the daemon");
    assert_ne!(invocation(), stopped);
}

fn run(e: &Engine, script: &str) -> String {
    crate::docker::run(e, VOL, script)
}

fn upgraded_under_a_running_container(e: &Engine, newer: &Path) {
    // A container writes through the upgrade: the daemon restarts on the
    // new package and the container never notices.
    let writer =
        crate::docker::start(e, DRIVER, VOL, "while :; do date >> /data/log; sleep 0.2; done");
    let before = invocation();
    let upgrade = install(newer);
    assert!(
        upgrade.contains("Preparing to unpack") && upgrade.contains("over (0.1.0-1)"),
        "{upgrade}"
    );
    assert!(active("ballast.service"));
    assert_ne!(invocation(), before, "the upgrade did not restart the daemon");
    let lines = || run(e, "wc -l < /data/log").trim().parse::<u64>().unwrap();
    let seen = lines();
    wait_until("the container's writes after the upgrade", || lines() > seen);

    // While it runs, the package refuses to go, and says why.
    let (ok, refused) = exec("dpkg -r ballast");
    assert!(!ok && refused.contains("volumes are in use by containers"), "{refused}");
    assert!(active("ballast.service"), "a refused removal stopped the daemon");
    e.ok(&["rm", "-f", &writer]);
    let inspected = exec_ok(&format!("ballast --json volume inspect {VOL}"));
    assert!(
        inspected.contains("\"mountCount\": 0"),
        "the container's mount was not released: {inspected}"
    );
}

fn removed_keeping_every_volume(e: &Engine, package: &Path, plugins: &Path, pool: &Path) {
    let removed = exec_ok("dpkg -r ballast");
    assert!(removed.contains(&format!("kept in {STATE}")), "{removed}");
    assert!(!plugins.join("ballast.sock").exists(), "the plugin socket outlived the package");
    exec_ok(&format!(
        "! test -e /usr/bin/ballast && ! test -e /usr/lib/systemd/system/ballast.service \
         && test -f {STATE}/ballast.db && test -f /etc/ballast/ballast.toml \
         && ls {STATE}/pools/local/volumes/v*"
    ));
    let kept = std::fs::read_dir(pool.join("volumes")).unwrap().count();
    assert_eq!(kept, 1, "the shared pool's volume is gone after dpkg -r");

    // Reinstalled: enabled again, and Docker finds the volume and its data.
    install(package);
    for unit in ["ballast.socket", "ballast.service"] {
        assert_eq!(exec_ok(&format!("systemctl is-enabled {unit}")).trim(), "enabled");
    }
    assert!(active("ballast.service"));
    assert_eq!(run(e, "cat /data/f"), "hello");
    e.ok(&["volume", "rm", VOL]);
}

fn purged_keeping_backup_passwords(pool: &Path) {
    let purged = exec_ok("dpkg -P ballast");
    assert!(
        purged.contains(&format!("deleted the volumes, snapshots and metadata in {STATE}")),
        "{purged}"
    );
    assert!(purged.contains("kept /var/lib/ballast/backup-keys"), "{purged}");
    exec_ok(&format!(
        "! test -e {STATE}/ballast.db && ! test -e {STATE}/pools && ! test -e /etc/ballast \
         && test -s {STATE}/backup-keys/nas.key"
    ));
    // The pool configured elsewhere keeps its data (the Docker volume's, in its trash).
    let mut todo = vec![pool.to_path_buf()];
    let mut found = false;
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read_to_string(&path).is_ok_and(|t| t == "hello\n") {
                found = true;
            }
        }
    }
    assert!(found, "the purge deleted data of a pool outside {STATE}");
}
