//! The CLI as installed: `--version` with the git revision, shell
//! completions and man pages generated from the commands, `docker ballast`
//! through Docker's CLI-plugin protocol, and errors that say what to do.

use std::process::Command;

use serde_json::Value;

use crate::harness::{Daemon, ScratchFs, engine, root_or_skip};

const BIN: &str = env!("CARGO_BIN_EXE_ballast");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env_remove("BALLAST_ADMIN").output().unwrap()
}

#[test]
fn version_completions_and_man_pages() {
    let v = String::from_utf8(run(&["--version"]).stdout).unwrap();
    assert!(v.starts_with(&format!("ballast {} (git ", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(!v.contains("git unknown"), "built from a git checkout: {v}");

    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["volume", "snapshot", "backup", "schedule", "admin"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("ballast.bash");
            std::fs::write(&file, &script).unwrap();
            // The script parses, and completes a subcommand.
            let check = format!(
                "source {}; COMP_WORDS=(ballast vol); COMP_CWORD=1; _ballast ballast vol ballast; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file.display()
            );
            let out = Command::new("bash").arg("-c").arg(check).output().unwrap();
            let words = String::from_utf8_lossy(&out.stdout);
            assert!(words.lines().any(|w| w == "volume"), "bash completes `vol`: {words:?}");
        }
    }
    assert!(!run(&["completions", "tcsh-ish"]).status.success());

    let dir = tempfile::tempdir().unwrap();
    let out = run(&["man", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in
        ["ballast.1", "ballast-serve.1", "ballast-volume-create.1", "ballast-backup-restore.1"]
    {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        let name = page.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {name}")), "{page}: {}", &text[..200.min(text.len())]);
    }
    let create = std::fs::read_to_string(dir.path().join("ballast-volume-create.1")).unwrap();
    assert!(create.contains("ballast volume create"), "the synopsis names the full command");
}

#[test]
fn a_missing_daemon_gets_an_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let out = run(&["--admin", &format!("unix://{}", sock.display()), "volume", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the socket does not exist") && err.contains("ballast serve"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // A socket file nobody listens on any more.
    std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = run(&["--admin", &format!("unix://{}", sock.display()), "volume", "ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn docker_ballast_is_the_cli_as_a_docker_plugin() {
    if !root_or_skip() {
        return;
    }
    let Some(engine) = engine() else { return };
    let d = Daemon::private("cli-docker-plugin");
    let config = tempfile::tempdir().unwrap();
    let plugins = config.path().join("cli-plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::os::unix::fs::symlink(BIN, plugins.join("docker-ballast")).unwrap();
    let docker = |args: &[&str]| {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", config.path())
            .env("DOCKER_HOST", &engine.host)
            .env("BALLAST_ADMIN", format!("unix://{}", d.admin_socket.display()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success(), text, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, help, _) = docker(&["--help"]);
    assert!(
        ok && help.contains("ballast*") || help.contains("ballast "),
        "docker lists it: {help}"
    );
    let (ok, out, err) = docker(&["ballast", "volume", "create", "db"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = docker(&["ballast", "volume", "snapshot", "db", "--name", "first"]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = docker(&["ballast", "--json", "snapshot", "ls"]);
    assert!(ok);
    let snaps: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(snaps[0]["name"], "first", "{snaps}");
    let (ok, out, _) = docker(&["ballast", "--version"]);
    assert!(ok && out.contains("(git "), "{out}");
    let (ok, _, err) = docker(&["ballast", "volume", "inspect", "nope"]);
    assert!(!ok && err.contains("nope"), "{err}");
}

#[test]
fn doctor_checks_the_pools_sockets_and_docker_and_says_what_to_fix() {
    if !root_or_skip() {
        return;
    }
    let Some(engine) = engine() else { return };
    let Some(xfs) = ScratchFs::xfs(320) else { return };
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra");
    // `extra` on the suite's temporary directory, which shares no
    // extents here (ext4); `fast` on xfs, which does.
    let config = format!(
        "[[pool]]\nname = \"extra\"\nbackend = \"dir\"\npath = \"{}\"\n\
         [[pool]]\nname = \"fast\"\nbackend = \"loop\"\nfs = \"ext4\"\npath = \"{}\"\n",
        extra.display(),
        xfs.mnt.join("pool").display()
    );
    let mut d = Daemon::for_docker_with("doctor-plugin", engine, Some(&config));
    let admin = format!("unix://{}", d.admin_socket.display());
    let doctor = || {
        let out = Command::new(BIN)
            .args(["--admin", &admin, "doctor"])
            .env("DOCKER_HOST", &engine.host)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, report) = doctor();
    assert!(ok, "{report}");
    if !fs_shares_extents(dir.path()) {
        assert!(report.contains("warn  pool extra: the filesystem at"), "{report}");
        assert!(report.contains("(no reflinks)"), "{report}");
    }
    for line in [
        "ok    the daemon answers",
        "ok    pool extra (dir)",
        "ok    pool fast: snapshots and clones share data (reflinks)",
        "ok    plugin socket /run/docker/plugins/doctor-plugin.sock",
        "ok    Docker reaches driver doctor-plugin (0 volumes)",
    ] {
        assert!(report.contains(line), "{line:?} in\n{report}");
    }
    // The pool's disk is not mounted at the next start (its marker is
    // missing): doctor fails, names the pool and says what to do.
    d.admin_ok(
        "POST",
        "/v1/volumes",
        serde_json::json!({ "name": "kept",
        "driverOpts": { "pool": "extra" } }),
        201,
    );
    assert!(d.terminate());
    let marker = extra.join("ballast-pool");
    std::fs::rename(&marker, dir.path().join("marker")).unwrap();
    d.start_again();
    let (ok, report) = doctor();
    assert!(!ok, "{report}");
    assert!(report.contains("FAIL  pool extra (dir) is unavailable"), "{report}");
    assert!(report.contains("→ mount the pool's disk"), "{report}");
    assert!(d.terminate());
    std::fs::rename(dir.path().join("marker"), &marker).unwrap();
    d.start_again();
    d.admin_ok("DELETE", "/v1/volumes/kept", Value::Null, 200);
}

/// Whether `dir`'s filesystem shares extents, asked the way cp does:
/// `cp --reflink=always` succeeds only where it can.
fn fs_shares_extents(dir: &std::path::Path) -> bool {
    let (a, b) = (dir.join("reflink-a"), dir.join("reflink-b"));
    std::fs::write(&a, [1u8; 4096]).unwrap();
    let cp = Command::new("cp").arg("--reflink=always").arg(&a).arg(&b).output().unwrap();
    let ok = cp.status.success();
    let _ = (std::fs::remove_file(&a), std::fs::remove_file(&b));
    ok
}

#[test]
fn doctor_checks_the_host_even_when_no_daemon_answers() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("unix://{}", dir.path().join("admin.sock").display());
    let out = Command::new(BIN)
        .args(["--admin", &admin, "doctor"])
        .env("DOCKER_HOST", format!("unix://{}", dir.path().join("docker.sock").display()))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("FAIL  the daemon does not answer: no ballast daemon at"), "{report}");
    // The host's checks ran all the same, each with its finding.
    for what in ["mkfs.ext4", "mkfs.xfs", "the kernel has", "/dev/loop-control", "Docker's engine"]
    {
        assert!(report.lines().any(|l| l.contains(what)), "{what:?} in\n{report}");
    }
}

#[test]
fn doctor_fails_when_docker_sends_the_driver_name_to_a_dead_or_foreign_socket() {
    if !root_or_skip() {
        return;
    }
    let d = Daemon::private("doctor-stale");
    d.cli_ok(&["volume", "create", "only"]);
    let plugins = std::path::Path::new("/run/docker/plugins");
    std::fs::create_dir_all(plugins).unwrap();
    let legacy = plugins.join("doctor-stale.sock");
    let _ = std::fs::remove_file(&legacy);
    let doctor = || {
        let out = d.cli(&["doctor"]);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    // A daemon of that name ran and died: its socket stayed, and Docker
    // keeps sending the name there.
    drop(std::os::unix::net::UnixListener::bind(&legacy).unwrap());
    let (ok, report) = doctor();
    assert!(!ok, "{report}");
    let dead = format!(
        "FAIL  Docker sends driver doctor-stale to {}, where nothing answers",
        legacy.display()
    );
    assert!(report.contains(&dead), "{report}");
    assert!(report.contains("restart Docker"), "{report}");
    assert!(report.contains("another --alias"), "{report}");
    // Another process answers under the name: not this daemon.
    std::fs::remove_file(&legacy).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&legacy).unwrap();
    let (ok, report) = doctor();
    let _ = std::fs::remove_file(&legacy);
    drop(other);
    assert!(!ok, "{report}");
    let foreign = format!(
        "FAIL  Docker sends driver doctor-stale to {}, which another process (pid {}) serves",
        legacy.display(),
        std::process::id()
    );
    assert!(report.contains(&foreign), "{report}");
    assert!(report.contains("ok    the daemon answers at unix://"), "{report}");
    assert!(report.contains("(1 volume)\n"), "one volume, one word: {report}");
}

#[test]
fn docker_ballast_help_names_the_command_as_it_was_typed() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("docker-ballast");
    std::os::unix::fs::symlink(BIN, &plugin).unwrap();
    // Docker's CLI runs `docker-ballast ballast volume --help` for
    // `docker ballast volume --help`.
    let out = Command::new(&plugin).args(["ballast", "volume", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(help.contains("Usage: docker ballast volume "), "{help}");
    assert!(!help.contains("docker-ballast"), "{help}");
}

/// What bash offers for the last word of `words` (the script of
/// `ballast completions bash`, `ballast` on PATH, talking to `admin`).
fn bash_completes(words: &[&str], admin: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ballast.bash");
    std::fs::write(&script, run(&["completions", "bash"]).stdout).unwrap();
    std::os::unix::fs::symlink(BIN, dir.path().join("ballast")).unwrap();
    let (cur, prev) = (words[words.len() - 1], words[words.len() - 2]);
    let check = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; _ballast ballast {cur} {prev}; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.join(" "),
        words.len() - 1
    );
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg("-c")
        .arg(check)
        .env("PATH", path)
        .env("BALLAST_ADMIN", admin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_volume_and_snapshot_names_from_the_running_daemon() {
    let d = Daemon::private("cli-complete-names");
    d.cli_ok(&["volume", "create", "alpha-complete"]);
    d.cli_ok(&["volume", "create", "beta-complete"]);
    d.cli_ok(&["snapshot", "create", "alpha-complete", "--name", "alpha-snap"]);
    let admin = format!("unix://{}", d.admin_socket.display());

    let offered = bash_completes(&["ballast", "volume", "inspect", "al"], &admin);
    assert_eq!(offered, ["alpha-complete"]);
    let offered = bash_completes(&["ballast", "snapshot", "rm", "al"], &admin);
    assert_eq!(offered, ["alpha-snap"]);

    // No daemon: nothing offered, no error, no wait.
    let started = std::time::Instant::now();
    let offered =
        bash_completes(&["ballast", "volume", "inspect", "al"], "unix:///nonexistent.sock");
    assert!(offered.is_empty(), "{offered:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn completions_into_a_pipe_nobody_reads_end_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err, "", "nothing said about the closed pipe");
}

#[test]
fn serve_help_lists_only_the_daemons_flags() {
    let out = run(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && help.contains("--admin-socket"), "{help}");
    for client_only in ["--admin <", "--json", "--no-wait"] {
        assert!(!help.contains(client_only), "{client_only} in\n{help}");
    }
    // The client's commands keep them.
    let help = String::from_utf8_lossy(&run(&["volume", "ls", "--help"]).stdout).to_string();
    assert!(help.contains("--admin <") && help.contains("--json"), "{help}");
}
