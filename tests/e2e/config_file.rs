//! `ballast config`: the configuration file checked, exampled and
//! described without a daemon, as an operator does before a restart.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::serve_must_fail;

const BIN: &str = env!("CARGO_BIN_EXE_ballast");

/// Runs the binary with the environment's config variables replaced by
/// `env` (the test's own environment must not pick the file).
fn ballast(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("BALLAST_CONFIG").env_remove("BALLAST_STATE_DIR");
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_summarizes_a_good_file_and_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ballast.toml");
    let state = dir.path().join("state");
    let fast = dir.path().join("fast");
    std::fs::write(
        &file,
        format!(
            r#"
trash_retention = "2d"

[admin]
access_key = "admin-user-key"
secret_key = "admin-secret-value"

[[pool]]
name = "fast"
backend = "loop"
path = "{}"
default = true

[[backup_target]]
name = "offsite"
url = "s3://bucket/prefix"
access_key = "s3-access-key"
secret_key = "s3-secret-value"
"#,
            fast.display()
        ),
    )
    .unwrap();
    let args = ["config", "check", "--config", file.to_str().unwrap()];
    let args = [&args[..], &["--state-dir", state.to_str().unwrap()]].concat();
    let by_flags = ballast(&args, &[]);
    let out = text(&by_flags.stdout);
    assert_eq!(by_flags.status.code(), Some(0), "{out}{}", text(&by_flags.stderr));
    for line in [
        &format!("config {}: valid", file.display()),
        &format!("  fast  loop   {}  (ext4, 1G per volume, overcommit 1)", fast.display()),
        "default pool: fast",
        "  offsite  s3://bucket/prefix",
        "trash retention: 2d",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
    }
    let everything = out.clone() + &text(&by_flags.stderr);
    for secret in ["admin-user-key", "admin-secret-value", "s3-access-key", "s3-secret-value"] {
        assert!(!everything.contains(secret), "{secret} shown:\n{everything}");
    }

    // The daemon's variables name the same file and state directory.
    let by_env =
        ballast(&["config", "check"], &[("BALLAST_CONFIG", &file), ("BALLAST_STATE_DIR", &state)]);
    assert_eq!(by_env.status.code(), Some(0));
    assert_eq!(text(&by_env.stdout), out);
    // A pool without a path lives in the state directory.
    std::fs::write(&file, "[[pool]]\nname = \"plain\"\nbackend = \"dir\"\n").unwrap();
    let out = text(&ballast(&args, &[]).stdout);
    let want = format!("  plain  dir    {}", state.join("pools/plain").display());
    assert!(out.lines().any(|l| l == want), "{want:?} in\n{out}");
}

#[test]
fn config_check_of_a_bad_file_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ballast.toml");
    let check = || ballast(&["config", "check", "--config", file.to_str().unwrap()], &[]);
    for (bad, needles) in [
        ("[[pool]]\nname = \"fast\"\nbackend = \"zfs\"\n", &["key `backend`", "\"zfs\""][..]),
        ("[[pool]]\nname = \"fast\"\nbackend = \"dir\"\ncolour = 1\n", &["unknown field `colour`"]),
        ("trash_retention = \"soon\"\n", &["key `trash_retention`"]),
        ("[admin]\naccess_key = \"k\"\n", &["`access_key` and `secret_key` must be set together"]),
    ] {
        std::fs::write(&file, bad).unwrap();
        let out = check();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?}: nothing on stdout: {}", text(&out.stdout));
        assert!(err.contains(&format!("config {}", file.display())), "{bad:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{bad:?}: {needle:?} in {err}");
        }
    }
    // A file named but missing is an error, not the defaults.
    std::fs::remove_file(&file).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read"), "{}", text(&out.stderr));
}

#[test]
fn config_example_passes_config_check_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let example = ballast(&["config", "example"], &[]);
    assert_eq!(example.status.code(), Some(0));
    let file = dir.path().join("ballast.toml");
    std::fs::write(&file, &example.stdout).unwrap();
    let check = |file: &Path| {
        let out = ballast(
            &["config", "check", "--config", file.to_str().unwrap()],
            &[("BALLAST_STATE_DIR", dir.path())],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = text(&out.stdout);
        // Everything after the first line, which names the file.
        out.split_once('\n').unwrap().1.to_string()
    };
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let summary = check(&file);
    assert_eq!(summary, check(&empty), "the example sets nothing");
    assert!(summary.contains("default pool: default"), "{summary}");

    let reference = text(&ballast(&["config", "reference"], &[]).stdout);
    for row in
        ["| `trash_retention` |", "| `overcommit` |", "| `--state-dir` | `BALLAST_STATE_DIR` |"]
    {
        assert!(reference.contains(row), "{row} in\n{reference}");
    }
}

/// A file that `config check` passes must not stop `serve`: the host
/// checks the daemon makes at start (roots, group, where pools go) are
/// made by the check too, with the daemon's own messages.
#[test]
fn config_check_refuses_what_serve_would_refuse_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ballast.toml");
    let missing = dir.path().join("missing");
    let pool = |backend: &str, path: &Path| {
        format!("[[pool]]\nname = \"p\"\nbackend = \"{backend}\"\npath = \"{}\"\n", path.display())
    };
    for (bad, needle) in [
        (
            format!("host_path_roots = [\"{}\"]\n", missing.display()),
            format!("config key `host_path_roots`: {}", missing.display()),
        ),
        (
            "[admin]\nsocket_group = \"no-such-group-here\"\n".to_string(),
            "[admin] socket_group: no group named \"no-such-group-here\"".to_string(),
        ),
        (
            pool("dir", &missing.join("pool")),
            format!("its parent directory {} does not exist", missing.display()),
        ),
        (pool("btrfs", &dir.path().join("b")), "is not on a btrfs filesystem".to_string()),
    ] {
        std::fs::write(&file, &bad).unwrap();
        let state = dir.path().join("state");
        let args = ["config", "check", "--config", file.to_str().unwrap()];
        let out = ballast(&[&args[..], &["--state-dir", state.to_str().unwrap()]].concat(), &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}{}", text(&out.stdout));
        assert!(err.contains(&needle), "{bad}: {needle:?} in {err}");
        assert!(out.stdout.is_empty(), "{bad}: no \"valid\": {}", text(&out.stdout));
        // serve refuses the same file with the same words.
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let serve = serve_must_fail(&run, &["--config".as_ref(), file.as_os_str()], &[]);
        assert!(serve.contains(&needle), "{bad}: serve said {serve}");
        assert!(!missing.exists() && !dir.path().join("b").exists(), "the check made nothing");
    }
    // What serve makes itself (the state directory and its pools) is fine
    // missing, and so is a group given by number.
    let good = format!(
        "[admin]\nsocket_group = \"4242\"\n{}",
        pool("dir", &dir.path().join("new-state/pools/p"))
    );
    std::fs::write(&file, good).unwrap();
    let state = dir.path().join("new-state");
    let args = ["config", "check", "--config", file.to_str().unwrap()];
    let out = ballast(&[&args[..], &["--state-dir", state.to_str().unwrap()]].concat(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!state.exists(), "the check made nothing");
}

/// A mistake next to a secret: `config check` and `serve` say where it
/// is and what is wrong, and print nothing of the secret, which would end
/// up in a terminal, a ticket or the daemon's log.
#[test]
fn a_bad_line_holding_a_secret_is_reported_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ballast.toml");
    for (line, place) in [
        ("secret_kye = \"wJalrXUtnFEMIK7MDENG\"", "line 3, column 1"),
        ("secret_key = \"wJalrXUtn\\FEMIK7MDENG\"", "line 3, column 25"),
        ("secret_key = 12345678", "line 3, column 14"),
    ] {
        std::fs::write(&file, format!("[admin]\naccess_key = \"ops\"\n{line}\n")).unwrap();
        let out = ballast(&["config", "check", "--config", file.to_str().unwrap()], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {err}");
        assert!(err.contains(place), "{line}: {place} in {err}");
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let serve = serve_must_fail(&run, &["--config".as_ref(), file.as_os_str()], &[]);
        for shown in [err, serve] {
            assert!(!shown.contains("wJalr") && !shown.contains("12345678"), "{shown}");
        }
    }
    // Credentials written into a target's URL are refused, not echoed.
    let url = "s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/prefix";
    std::fs::write(&file, format!("[[backup_target]]\nname = \"o\"\nurl = \"{url}\"\n")).unwrap();
    let out = ballast(&["config", "check", "--config", file.to_str().unwrap()], &[]);
    let shown = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("`access_key` and `secret_key`"), "{shown}");
    assert!(!shown.contains("FEMIK7MDENG") && !shown.contains("AKIAEXAMPLE"), "{shown}");
}
