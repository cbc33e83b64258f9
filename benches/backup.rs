//! `cargo bench --bench backup` (as root; restic, btrfs-progs, xfsprogs):
//! ballast's backups as a user meets them, `ballast backup create VOL`
//! from the command to the backup's end, next to Debian's `restic backup`
//! of the same volume's files in the same run, on every pool kind: a dir
//! pool on the root filesystem (ext4: no reflinks, so the backup reads the
//! live volume), a dir pool on xfs with reflinks and a btrfs pool (both on
//! loop-mounted scratch filesystems; snapshots cost nothing there), and a
//! loop pool of ext4 images. For each: a full backup, an incremental one
//! after 1% of the files changed, and a restore (ballast's into a new
//! volume of the pool, restic's into a directory on the same filesystem),
//! with the bytes ballast's daemon read for the incremental.
//! `BALLAST_BENCH_MIB` sets the data size (default 256).

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use harness::{Daemon, ScratchFs};
use serde_json::Value;

const PASSWORD: &str = "bench password";

/// Per pool kind: ballast's and restic's full, incremental and restore
/// times, and the MiB ballast's daemon read for the incremental.
struct Row {
    kind: &'static str,
    ballast: [f64; 3],
    restic: [f64; 3],
    incremental_read_mib: f64,
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root");
        return;
    }
    if !Command::new("restic").arg("version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("restic is not installed (apt-get install restic)");
        return;
    }
    let mib: u64 =
        std::env::var("BALLAST_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let key = work.path().join("key");
    std::fs::write(&key, PASSWORD).unwrap();
    let data = work.path().join("data");
    let files = make_data(&data, mib << 20);
    eprintln!("{} files, {mib} MiB", files.len());

    // Room for the volume, a snapshot, a restored copy and restic's.
    let scratch = mib * 5 + 512;
    let xfs = ScratchFs::xfs(scratch);
    let btrfs = ScratchFs::btrfs(scratch);
    let mut kinds: Vec<(&str, String, PathBuf, Vec<String>)> = vec![(
        "dir (ext4, no reflink)",
        format!("backend = \"dir\"\npath = \"{}\"", work.path().join("pool-dir").display()),
        work.path().to_path_buf(),
        Vec::new(),
    )];
    if let Some(fs) = &xfs {
        kinds.push((
            "dir (xfs, reflink)",
            format!("backend = \"dir\"\npath = \"{}\"", fs.mnt.join("pool").display()),
            fs.mnt.clone(),
            Vec::new(),
        ));
    }
    if let Some(fs) = &btrfs {
        kinds.push((
            "btrfs",
            format!("backend = \"btrfs\"\npath = \"{}\"", fs.mnt.join("pool").display()),
            fs.mnt.clone(),
            Vec::new(),
        ));
    }
    kinds.push((
        "loop (ext4 images)",
        format!("backend = \"loop\"\npath = \"{}\"", work.path().join("pool-loop").display()),
        work.path().to_path_buf(),
        vec!["-o".into(), format!("size={}M", mib * 2 + 128)],
    ));
    // A repository per pool kind, as restic has: each full backup is one.
    let mut config = String::new();
    for (i, (_, pool, _, _)) in kinds.iter().enumerate() {
        config += &format!(
            "[[pool]]\nname = \"p{i}\"\n{pool}\n{}[[backup_target]]\nname = \"p{i}\"\n\
             url = \"file://{}\"\npassword_file = \"{}\"\n",
            if i == 0 { "default = true\n" } else { "" },
            work.path().join(format!("repo-ballast-{i}")).display(),
            key.display()
        );
    }
    let d = Daemon::private_with("bench-backup", &config);
    let mut rows = Vec::new();
    for (i, (kind, _, fs, opts)) in kinds.iter().enumerate() {
        eprintln!("{kind}…");
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let (ballast, read, files_at) = run_ballast(&d, &format!("p{i}"), &opts, &data, &files);
        let restic = run_restic(work.path(), fs, &files_at, &files, &key, i);
        rows.push(Row { kind, ballast, restic, incremental_read_mib: read });
        d.cli_ok(&["volume", "deactivate", &format!("data-p{i}")]);
    }
    print_table(mib, files.len(), &rows);
    for line in d.log().lines().filter(|l| l.contains("backup created") || l.contains("read again"))
    {
        eprintln!("{line}");
    }
}

fn print_table(mib: u64, files: usize, rows: &[Row]) {
    println!(
        "\n{mib} MiB, {files} files; seconds, ballast ÷ restic in brackets (goals: full ≤ 1.0, \
         incremental ≤ 0.3, restore ≤ 0.8)\n"
    );
    println!(
        "| pool | full backup | incremental after 1% changed | restore | read by the incremental |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        let cell = |i: usize| {
            format!(
                "{:.2} / {:.2} (**{:.2}**)",
                r.ballast[i],
                r.restic[i],
                r.ballast[i] / r.restic[i]
            )
        };
        println!(
            "| {} | {} | {} | {} | {:.1} MiB |",
            r.kind,
            cell(0),
            cell(1),
            cell(2),
            r.incremental_read_mib
        );
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
            let len_usize = usize::try_from(len).expect("a file of the data set fits in memory");
            let mut text = Vec::with_capacity(len_usize);
            while (text.len() as u64) < len {
                let line =
                    format!("{} volume {} snapshot backup restore\n", next() % 100_000, next() % 7);
                text.extend_from_slice(line.as_bytes());
            }
            text.truncate(len_usize);
            text
        } else {
            (0..len).map(|_| next().to_le_bytes()[0]).collect()
        };
        let path = sub.join(format!("f{}", names.len()));
        std::fs::write(&path, content).unwrap();
        written += len;
        names.push(path.strip_prefix(dir).unwrap().to_path_buf());
    }
    names
}

/// Rewrites every 100th file with new random bytes (from `seed` on) of
/// the same length.
fn change_one_percent(dir: &Path, files: &[PathBuf], seed: u64) {
    for (i, f) in files.iter().step_by(100).enumerate() {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        std::fs::write(
            dir.join(f),
            ballast_test_support::noise(seed + i as u64, usize::try_from(len).unwrap()),
        )
        .unwrap();
    }
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

/// Bytes the daemon has read through system calls so far.
fn rchar(d: &Daemon) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", d.pid().unwrap())).unwrap();
    io.lines().find_map(|l| l.strip_prefix("rchar:")?.trim().parse().ok()).unwrap()
}

/// A volume `data-POOL` filled with `data`, backed up (to the target
/// named as the pool), changed, backed up again and restored. Returns the three times, the MiB read by the
/// incremental, and where the volume's files are (for restic).
fn run_ballast(
    d: &Daemon,
    pool: &str,
    opts: &[&str],
    data: &Path,
    files: &[PathBuf],
) -> ([f64; 3], f64, PathBuf) {
    let vol = format!("data-{pool}");
    let mut create = vec!["volume", "create", &vol, "-o"];
    let pool_opt = format!("pool={pool}");
    create.push(&pool_opt);
    create.extend_from_slice(opts);
    d.cli_ok(&create);
    let v = d.admin_ok("POST", &format!("/v1/volumes/{vol}?action=activate"), Value::Null, 200);
    let uri = v["uri"].as_str().unwrap();
    let mountpoint = PathBuf::from(&uri[uri.find("://").unwrap() + 3..]);
    sh(Command::new("cp").arg("-a").arg(format!("{}/.", data.display())).arg(&mountpoint));
    sh(&mut Command::new("sync"));
    let full = timed(|| {
        d.cli_ok(&["backup", "create", &vol, "--target", pool]);
    });
    change_one_percent(&mountpoint, files, 1);
    sh(&mut Command::new("sync"));
    let before = rchar(d);
    let mut out = String::new();
    let incremental =
        timed(|| out = d.cli_ok(&["--json", "backup", "create", &vol, "--target", pool]));
    let read = (rchar(d) - before) as f64 / f64::from(1 << 20);
    let b: Value = serde_json::from_str(&out).unwrap();
    let newest = b["id"].as_str().unwrap().to_string();
    let restored = format!("restored-{pool}");
    let restore = timed(|| {
        d.cli_ok(&["backup", "restore", &newest, "--name", &restored, "--pool", pool]);
    });
    ([full, incremental, restore], read, mountpoint)
}

/// restic on the same files: init, full backup, the same 1% change
/// again, incremental, restore into a directory on the pool's filesystem.
fn run_restic(
    work: &Path,
    fs: &Path,
    files_at: &Path,
    files: &[PathBuf],
    key: &Path,
    n: usize,
) -> [f64; 3] {
    let repo = work.join(format!("repo-restic-{n}"));
    let base = |args: &[&str]| {
        let mut c = Command::new("restic");
        c.arg("-r").arg(&repo).arg("--password-file").arg(key).arg("-q").args(args);
        c
    };
    sh(&mut base(&["init"]));
    let full = timed(|| sh(base(&["backup"]).arg(files_at)));
    // Other files, new bytes: nothing restic already holds.
    change_one_percent(files_at, &files[1..], 1_000_000);
    sh(&mut Command::new("sync"));
    let incremental = timed(|| sh(base(&["backup"]).arg(files_at)));
    let target = fs.join(format!("restored-by-restic-{n}"));
    let restore = timed(|| sh(base(&["restore", "latest", "--target"]).arg(&target)));
    let _ = std::fs::remove_dir_all(&target);
    [full, incremental, restore]
}
