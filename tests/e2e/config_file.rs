//! `ballast config`: the configuration file checked, exampled and
//! described without a daemon, as an operator does before a restart.

use std::path::Path;
use std::process::{Command, Output};

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
    std::fs::write(
        &file,
        r#"
trash_retention = "2d"

[admin]
access_key = "admin-user-key"
secret_key = "admin-secret-value"

[[pool]]
name = "fast"
backend = "loop"
path = "/srv/ballast/fast"
default = true

[[backup_target]]
name = "offsite"
url = "s3://bucket/prefix"
access_key = "s3-access-key"
secret_key = "s3-secret-value"
"#,
    )
    .unwrap();
    let args = ["config", "check", "--config", file.to_str().unwrap()];
    let args = [&args[..], &["--state-dir", state.to_str().unwrap()]].concat();
    let by_flags = ballast(&args, &[]);
    let out = text(&by_flags.stdout);
    assert_eq!(by_flags.status.code(), Some(0), "{out}{}", text(&by_flags.stderr));
    for line in [
        &format!("config {}: valid", file.display()),
        "  fast  loop   /srv/ballast/fast  (ext4, 1G per volume, overcommit 1)",
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
