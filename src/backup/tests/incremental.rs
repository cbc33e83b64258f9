//! What a backup stores: only what changed, once across volumes; what
//! list, remove and retention then see.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use super::super::{Error, Keep, Progress};
use super::{Fixture, backup, meta, quiet};
use ballast_test_support::noise;

/// 100 files of 64 KiB that do not compress.
fn hundred_files(dir: &Path) {
    for i in 0..100 {
        fs::write(dir.join(format!("f{i:03}")), noise(i + 10, 64 << 10)).unwrap();
    }
}

#[test]
fn a_backup_with_a_parent_stores_only_what_changed() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    hundred_files(&src);
    let repo = fx.open();
    let first = backup(&*repo, &src, "v");
    assert!(first.stored_bytes > 6_000_000, "{first:?}");
    assert_eq!(first.size_bytes, 100 * (64 << 10));
    assert_eq!(first.files, 101, "100 files and the root");

    fs::write(src.join("f042"), noise(999, 64 << 10)).unwrap();
    let m = meta("v", "1vv");
    let second = repo.backup(&src, &m, Some(&first.id), &quiet).unwrap();
    assert!(second.stored_bytes < first.stored_bytes / 20, "{second:?} after {first:?}");
    assert_ne!(second.id, first.id);
}

#[test]
fn identical_data_of_another_volume_adds_almost_nothing() {
    let fx = Fixture::new();
    let (a, b) = (fx.mkdir("a"), fx.mkdir("b"));
    hundred_files(&a);
    hundred_files(&b);
    let repo = fx.open();
    let first = backup(&*repo, &a, "a");
    let second = backup(&*repo, &b, "b");
    assert!(second.stored_bytes < 64 << 10, "{second:?} after {first:?}");
}

#[test]
fn progress_is_reported_while_a_backup_runs() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    hundred_files(&src);
    let seen = Mutex::new(Vec::<Progress>::new());
    let on = |p: Progress| seen.lock().unwrap().push(p);
    fx.open().backup(&src, &meta("v", "1vv"), None, &on).unwrap();
    let last = *seen.lock().unwrap().last().expect("some progress");
    assert_eq!(last.bytes_done, 100 * (64 << 10), "{last:?}");
    assert_eq!(last.bytes_total, 100 * (64 << 10), "{last:?}");
    assert_eq!(last.files_done, 100, "{last:?}");
}

#[test]
fn another_host_lists_the_backups_with_their_volumes() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    fs::write(src.join("x"), b"x").unwrap();
    let repo = fx.open();
    let a = repo.backup(&src, &meta("alpha", "1v1"), None, &quiet).unwrap();
    let b = repo.backup(&src, &meta("beta", "1v2"), None, &quiet).unwrap();

    // Same password file, empty state directory.
    let other = super::super::open(&fx.target, &fx.path("other-state")).unwrap();
    let listed = other.list().unwrap();
    let ids: Vec<_> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [a.id.as_str(), b.id.as_str()], "oldest first");
    assert_eq!(listed[0].meta, meta("alpha", "1v1"));
    assert_eq!(listed[1].meta.volume_name, "beta");
    assert_eq!(listed[0].size_bytes, 1);
    assert!(listed[0].time_ms <= listed[1].time_ms);
}

#[test]
fn a_backup_is_found_by_a_prefix_and_removed() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    fs::write(src.join("x"), b"kept").unwrap();
    let repo = fx.open();
    let gone = backup(&*repo, &src, "v");
    let kept = backup(&*repo, &src, "v");

    let dest = fx.mkdir("d1");
    repo.restore(&gone.id[..8], &dest, &quiet).unwrap();
    repo.remove(&gone.id[..10]).unwrap();
    let ids: Vec<_> = repo.list().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, std::slice::from_ref(&kept.id));

    match repo.restore(&gone.id, &fx.mkdir("d2"), &quiet) {
        Err(Error::NotFound(m)) => assert!(m.contains(&fx.target.url), "{m}"),
        other => panic!("{other:?}"),
    }
    // The data the kept backup shares survived the prune.
    let dest = fx.mkdir("d3");
    repo.restore(&kept.id, &dest, &quiet).unwrap();
    assert_eq!(fs::read(dest.join("x")).unwrap(), b"kept");
    repo.verify(&kept.id).unwrap();
}

#[test]
fn a_restore_needs_an_empty_directory() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    fs::write(src.join("x"), b"x").unwrap();
    let repo = fx.open();
    let info = backup(&*repo, &src, "v");
    let dest = fx.mkdir("dest");
    fs::write(dest.join("mine"), b"precious").unwrap();
    assert!(matches!(repo.restore(&info.id, &dest, &quiet), Err(Error::Refused(_))));
    assert_eq!(fs::read(dest.join("mine")).unwrap(), b"precious");
    let empty = fx.mkdir("empty");
    assert!(matches!(repo.restore("zz", &empty, &quiet), Err(Error::NotFound(_))));
    assert!(matches!(repo.restore("0123456789", &empty, &quiet), Err(Error::NotFound(_))));
}

#[test]
fn retention_forgets_only_that_volume_s_older_backups() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    fs::write(src.join("x"), b"x").unwrap();
    let repo = fx.open();
    let mine: Vec<_> = (0..4).map(|_| backup(&*repo, &src, "mine").id).collect();
    let other = backup(&*repo, &src, "other").id;
    // Another host's volume with the same id is another volume.
    let theirs = super::VolumeMeta { host_id: "h-b".into(), ..meta("mine", "1vmine") };
    let elsewhere = repo.backup(&src, &theirs, None, &quiet).unwrap().id;

    let keep = Keep { last: Some(2), ..Keep::default() };
    let mut forgotten = repo.apply_retention("h-a", "1vmine", keep).unwrap();
    forgotten.sort();
    let mut want = mine[..2].to_vec();
    want.sort();
    assert_eq!(forgotten, want);
    let left: Vec<_> = repo.list().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(left, [mine[2].clone(), mine[3].clone(), other, elsewhere]);
    assert!(repo.apply_retention("h-a", "1vmine", Keep::default()).unwrap().is_empty());
}
