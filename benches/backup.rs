//! `cargo bench --bench backup` (as root): ballast's backups next to
//! Debian's `restic` and `rustic` (crates.io `rustic-rs`), each with its
//! own local repository, on the same mixed data: a full backup, an
//! incremental one after 1% of the files changed, a restore, and the bytes
//! each repository holds. `BALLAST_BENCH_MIB` sets the data size (default
//! 1024). ballast reads an existing snapshot (`backup create --snapshot`),
//! so its times are the backup's own, as the others read a directory.

#[path = "../tests/e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use harness::Daemon;

#[path = "../src/backup/tests/s3server.rs"]
mod s3server;
use serde_json::Value;

const PASSWORD: &str = "bench password";

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root");
        return;
    }
    let mib: u64 =
        std::env::var("BALLAST_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let key = work.path().join("key");
    std::fs::write(&key, PASSWORD).unwrap();
    let data = work.path().join("data");
    let files = make_data(&data, mib << 20);
    eprintln!("{} files, {mib} MiB", files.len());

    let mut rows: Vec<(&str, Vec<Option<f64>>)> = vec![
        ("full backup (s)", Vec::new()),
        ("incremental after 1% changed (s)", Vec::new()),
        ("restore (s)", Vec::new()),
        ("repository size (MiB)", Vec::new()),
    ];
    let (ballast, s3) = run_ballast(work.path(), &data, &files, &key);
    let restic = run_cli("restic", work.path(), &data, &files, &key);
    let rustic = run_cli("rustic", work.path(), &data, &files, &key);
    for (i, row) in rows.iter_mut().enumerate() {
        for tool in [&ballast, &restic, &rustic] {
            row.1.push(tool.as_ref().map(|t| t[i]));
        }
    }
    println!(
        "\n| {mib} MiB, {} files | ballast | restic | rustic | ballast ÷ restic | ballast ÷ rustic |",
        files.len()
    );
    println!("|---|---|---|---|---|---|");
    for (name, v) in rows {
        let cell = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.2}"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            cell(v[0]),
            cell(v[1]),
            cell(v[2]),
            ratio(v[0], v[1]),
            ratio(v[0], v[2])
        );
    }
    match (s3, ballast) {
        (Some(s3), Some(local)) => println!(
            "\nballast's full backup to S3 (s3s-fs on loopback): {s3:.2} s, {:.2} × its time to a \
             local directory",
            s3 / local[0]
        ),
        _ => println!("\n(no S3 row: s3s-fs is not installed)"),
    }
}

/// Writes `bytes` of files into `dir`: a few thousand, 4 KiB to 1 MiB,
/// about half compressible text and half random. Returns their names.
fn make_data(dir: &Path, bytes: u64) -> Vec<PathBuf> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut written = 0;
    let mut names = Vec::new();
    while written < bytes {
        let sub = dir.join(format!("d{:02}", names.len() % 40));
        std::fs::create_dir_all(&sub).unwrap();
        let len = (4096 + next() % (1 << 20)).min(bytes - written).max(1);
        let content: Vec<u8> = if names.len() % 2 == 0 {
            // Log-like lines: compressible, but not one repeated block.
            let mut text = Vec::with_capacity(len as usize);
            while (text.len() as u64) < len {
                let line =
                    format!("{} volume {} snapshot backup restore\n", next() % 100_000, next() % 7);
                text.extend_from_slice(line.as_bytes());
            }
            text.truncate(len as usize);
            text
        } else {
            (0..len).map(|_| next() as u8).collect()
        };
        let path = sub.join(format!("f{}", names.len()));
        std::fs::write(&path, content).unwrap();
        written += len;
        names.push(path.strip_prefix(dir).unwrap().to_path_buf());
    }
    names
}

/// Rewrites every 100th file with new random bytes of the same length.
fn change_one_percent(dir: &Path, files: &[PathBuf]) {
    for (i, f) in files.iter().step_by(100).enumerate() {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        std::fs::write(dir.join(f), harness::noise(i as u64, len as usize)).unwrap();
    }
}

fn du_mib(path: &Path) -> f64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().unwrap().parse::<f64>().unwrap() / (1 << 20) as f64
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// restic or rustic: init, backup, backup again after the change,
/// restore. None when the tool is not installed.
fn run_cli(
    tool: &str,
    work: &Path,
    data: &Path,
    files: &[PathBuf],
    key: &Path,
) -> Option<[f64; 4]> {
    if Command::new(tool).arg("--version").output().is_err() {
        eprintln!("{tool} is not installed: its column stays empty");
        return None;
    }
    let repo = work.join(format!("repo-{tool}"));
    let copy = work.join(format!("data-{tool}"));
    sh(Command::new("cp").arg("-a").arg(data).arg(&copy));
    sh(&mut Command::new("sync"));
    let base = |args: &[&str]| {
        let mut c = Command::new(tool);
        c.arg("-r").arg(&repo).arg("--password-file").arg(key).args(args);
        if tool == "rustic" {
            c.arg("--no-progress");
        }
        c
    };
    sh(&mut base(&["init"]));
    let full = timed(|| sh(base(&["backup"]).arg(&copy)));
    change_one_percent(&copy, files);
    sh(&mut Command::new("sync"));
    let incremental = timed(|| sh(base(&["backup"]).arg(&copy)));
    let target = work.join(format!("restored-{tool}"));
    let restore = if tool == "rustic" {
        timed(|| sh(base(&["restore", "latest"]).arg(&target)))
    } else {
        timed(|| sh(base(&["restore", "latest", "--target"]).arg(&target)))
    };
    let size = du_mib(&repo);
    for dir in [&copy, &target] {
        let _ = std::fs::remove_dir_all(dir);
    }
    Some([full, incremental, restore, size])
}

/// ballast's four numbers, and its full backup's time to S3.
fn run_ballast(
    work: &Path,
    data: &Path,
    files: &[PathBuf],
    key: &Path,
) -> (Option<[f64; 4]>, Option<f64>) {
    let repo = work.join("repo-ballast");
    let mut config = format!(
        "[[pool]]\nname = \"bench\"\nbackend = \"dir\"\npath = \"{}\"\ndefault = true\n\
         [[backup_target]]\nname = \"bench\"\nurl = \"file://{}\"\npassword_file = \"{}\"\n",
        work.join("pool").display(),
        repo.display(),
        key.display()
    );
    let s3 = s3server::S3Server::start();
    if let Some(s3) = &s3 {
        s3.bucket("bench");
        config += &format!(
            "[[backup_target]]\nname = \"s3\"\nurl = \"s3://bench/repo\"\nendpoint = \"{}\"\n\
             access_key = \"{}\"\nsecret_key = \"{}\"\npassword_file = \"{}\"\n",
            s3.endpoint,
            s3server::ACCESS_KEY,
            s3server::SECRET_KEY,
            key.display()
        );
    }
    let d = Daemon::private_with("bench-backup", &config);
    d.cli_ok(&["volume", "create", "data"]);
    let v = d.admin_ok("POST", "/v1/volumes/data?action=activate", Value::Null, 200);
    let uri = v["uri"].as_str().unwrap();
    let mountpoint = PathBuf::from(&uri[uri.find("://").unwrap() + 3..]);
    sh(Command::new("cp").arg("-a").arg(format!("{}/.", data.display())).arg(&mountpoint));
    let backup = |d: &Daemon, to_s3: bool| {
        let snap = d.snapshot("data", "bench");
        // The snapshot's copy written out first: its writeback is not the
        // backup's time.
        sh(&mut Command::new("sync"));
        let target = if to_s3 { "s3" } else { "bench" };
        let secs = timed(|| {
            d.cli_ok(&["backup", "create", "data", "--snapshot", &snap, "--target", target]);
        });
        d.cli_ok(&["snapshot", "rm", &snap]);
        secs
    };
    let to_s3 = s3.as_ref().map(|_| backup(&d, true));
    let full = backup(&d, false);
    change_one_percent(&mountpoint, files);
    let incremental = backup(&d, false);
    let list = d.admin_ok("GET", "/v1/backups?backupTargetId=bench", Value::Null, 200);
    let newest =
        list["data"].as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string();
    let restore = timed(|| {
        d.cli_ok(&["backup", "restore", &newest, "--name", "restored"]);
    });
    let size = du_mib(&repo);
    // Where ballast's time goes, from its own log.
    for line in d.log().lines().filter(|l| {
        l.contains("backup created")
            || l.contains("commands::backup")
            || l.contains("admin request") && l.contains("backups")
            || l.contains("volume filled")
            || l.contains("using no cache")
    }) {
        eprintln!("{line}");
    }
    d.cli_ok(&["volume", "deactivate", "data"]);
    for name in ["data", "restored"] {
        d.cli_ok(&["volume", "rm", name]);
    }
    (Some([full, incremental, restore, size]), to_s3)
}
