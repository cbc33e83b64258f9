//! Backups of a live tree: unchanged files are not read again, and a file
//! that changes while read is read again, or named.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::super::{BackupInfo, Repository};
use super::{Fixture, meta, quiet};
use ballast_test_support::noise;

fn live(repo: &dyn Repository, src: &Path, parent: Option<&str>) -> BackupInfo {
    let dir = File::open(src).unwrap().into();
    repo.backup_live(dir, src, &meta("v", "1v1"), parent, &quiet).unwrap()
}

/// 100 files of 64 KiB, written long enough ago not to be read twice.
fn hundred_files(dir: &Path) {
    for i in 0..100 {
        fs::write(dir.join(format!("f{i:03}")), noise(i + 10, 64 << 10)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn an_incremental_live_backup_reads_only_the_file_that_changed() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    hundred_files(&src);
    let repo = fx.open();
    let first = live(&*repo, &src, None);
    assert_eq!(first.unchanged_files, 0, "{first:?}");

    fs::write(src.join("f042"), noise(999, 64 << 10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let second = live(&*repo, &src, Some(&first.id));
    assert_eq!(second.unchanged_files, 99, "{second:?}");
    assert!(second.changed.is_empty(), "{second:?}");
}

#[test]
fn a_file_rewritten_with_its_old_size_and_mtime_is_read_again() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    hundred_files(&src);
    let repo = fx.open();
    let first = live(&*repo, &src, None);

    // Same size, the old modification time put back: only the change
    // time tells.
    let path = src.join("f007");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, noise(4242, 64 << 10)).unwrap();
    File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let second = live(&*repo, &src, Some(&first.id));
    assert_eq!(second.unchanged_files, 99, "{second:?}");
    let dest = fx.mkdir("dest");
    repo.restore(&second.id, &dest, &quiet).unwrap();
    assert_eq!(fs::read(dest.join("f007")).unwrap(), noise(4242, 64 << 10));
}

#[test]
fn a_file_written_just_before_the_backup_is_read_again_not_left_out() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    hundred_files(&src);
    // Its change time is within the tick the first pass cannot trust.
    fs::write(src.join("fresh"), b"just written").unwrap();
    let repo = fx.open();
    let info = live(&*repo, &src, None);
    assert!(info.changed.is_empty(), "{info:?}");
    let dest = fx.mkdir("dest");
    repo.restore(&info.id, &dest, &quiet).unwrap();
    assert_eq!(fs::read(dest.join("fresh")).unwrap(), b"just written");
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 101);
    assert_eq!(repo.list().unwrap().len(), 1, "the passes leave one backup");
}

#[test]
fn a_file_rewritten_during_the_backup_is_captured_whole_or_named() {
    const LEN: usize = 8 << 20;
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    hundred_files(&src);
    let path = src.join("busy");
    fs::write(&path, vec![b'a'; LEN]).unwrap();
    // Rewritten in place, all `a` then all `b` and so on, in small
    // writes: a reader that does not check sees a mix.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let f = File::options().write(true).open(&path).unwrap();
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
    let repo = fx.open();
    let started = SystemTime::now();
    let info = live(&*repo, &src, None);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let dest = fx.mkdir("dest");
    repo.restore(&info.id, &dest, &quiet).unwrap();
    let got = fs::read(dest.join("busy")).unwrap();
    let whole =
        got.len() == LEN && (got.iter().all(|b| *b == b'a') || got.iter().all(|b| *b == b'b'));
    assert!(
        whole || info.changed == ["busy"],
        "a torn file is neither whole nor named: {info:?} (after {:?})",
        started.elapsed()
    );
    assert!(info.changed.iter().all(|p| p == "busy"), "{info:?}");
}
