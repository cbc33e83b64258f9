//! Backups on a pool whose snapshots copy every byte (a dir pool without
//! reflinks): the backup reads the volume in place, so it copies nothing,
//! and an incremental reads only what changed.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::backup::{backup, files_of, repo_in, target};
use crate::harness::{Daemon, noise, root_or_skip, skip};

const MIB: usize = 1 << 20;

/// Bytes the daemon has read and written through system calls so far
/// (`rchar`, `wchar`: page cache or not, copy_file_range included).
fn io_of(d: &Daemon) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{}/io", d.pid().unwrap())).unwrap();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {io}"))
    };
    (field("rchar:"), field("wchar:"))
}

/// A daemon whose default dir pool cannot share extents, or None.
fn daemon_without_reflinks(name: &str, dir: &std::path::Path) -> Option<Daemon> {
    let (repo, key) = repo_in(dir);
    let d = Daemon::private_with(name, &target("nas", &repo, &key, ""));
    let pools = d.admin_ok("GET", "/v1/storagepools", Value::Null, 200);
    if pools["data"][0]["copiesShareData"] != false {
        skip("the test's pool shares extents: its snapshots cost nothing anyway");
        return None;
    }
    Some(d)
}

#[test]
fn a_backup_on_a_pool_without_reflinks_copies_nothing_and_an_incremental_reads_the_change() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = daemon_without_reflinks("backup-live", dir.path()) else { return };
    d.cli_ok(&["volume", "create", "data"]);
    let files = files_of(&d, "data");
    for i in 0..16 {
        std::fs::write(files.join(format!("f{i:02}")), noise(i, MIB)).unwrap();
    }
    let before = io_of(&d);
    let first = backup(&d, &["data"]);
    let after = io_of(&d);
    assert!(after.0 - before.0 >= 16 * MIB as u64, "the full backup read everything");

    std::fs::write(files.join("f07"), noise(99, MIB)).unwrap();
    let before = io_of(&d);
    let second = backup(&d, &["data"]);
    let after = io_of(&d);
    let (read, written) = (after.0 - before.0, after.1 - before.1);
    // One changed file of 16, plus the repository's index and trees: a
    // snapshot copy alone would read and write all 16 MiB.
    assert!(read < 4 * MIB as u64, "the incremental read {read} bytes");
    assert!(written < 4 * MIB as u64, "the incremental wrote {written} bytes");
    assert_ne!(first["resticId"], second["resticId"]);
    // No snapshot was taken for either: the first one now is 1s1.
    assert_eq!(d.snapshot("data", "after"), "1s1");

    // And the incremental holds the change.
    d.cli_ok(&["backup", "restore", second["id"].as_str().unwrap(), "--name", "copy"]);
    let copy = files_of(&d, "copy");
    assert_eq!(std::fs::read(copy.join("f07")).unwrap(), noise(99, MIB));
    assert_eq!(std::fs::read(copy.join("f08")).unwrap(), noise(8, MIB));
}

#[test]
fn a_file_rewritten_during_a_backup_is_restored_whole_or_named_in_the_backup() {
    if !root_or_skip() {
        return;
    }
    const LEN: usize = 32 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = daemon_without_reflinks("backup-live-torn", dir.path()) else { return };
    d.cli_ok(&["volume", "create", "db"]);
    let files = files_of(&d, "db");
    let path = files.join("table");
    std::fs::write(&path, vec![b'a'; LEN]).unwrap();
    // A database rewriting its table in place, all `a` then all `b`, in
    // small writes: a reader that does not check sees a mix.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            let mut round = 0u8;
            while !stop.load(Ordering::Relaxed) {
                round = round.wrapping_add(1);
                let block = vec![b'a' + round % 2; 64 << 10];
                for off in (0..LEN).step_by(block.len()) {
                    f.write_all_at(&block, off as u64).unwrap();
                }
            }
        })
    };
    let b = backup(&d, &["db"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    d.cli_ok(&["backup", "restore", b["id"].as_str().unwrap(), "--name", "copy"]);
    let got = std::fs::read(files_of(&d, "copy").join("table")).unwrap();
    let whole =
        got.len() == LEN && (got.iter().all(|c| *c == b'a') || got.iter().all(|c| *c == b'b'));
    let message = b["transitioningMessage"].as_str().unwrap_or_default();
    let named = message.contains("changed while being read") && message.contains("table");
    assert!(whole || named, "the restored table is torn and the backup says nothing: {b}");
}
