//! A restore gives back everything a volume had.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{Fixture, backup, describe, owner_mode, quiet, root_or_skip, user_xattrs};
use ballast_test_support::noise;

const SPARSE_LEN: u64 = 64 << 20;

/// One of everything a volume may hold.
fn populate(src: &Path) {
    fs::write(src.join("plain"), noise(1, 300_000)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("text"), b"hello\n").unwrap();

    // 64 MiB with 8 KiB of data at its start and end.
    let f = File::create(src.join("sparse")).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &noise(2, 4096), 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &noise(3, 4096), SPARSE_LEN - 4096).unwrap();

    symlink("plain", src.join("link")).unwrap();
    symlink("nowhere/at/all", src.join("dangling")).unwrap();
    fs::write(src.join("hard-a"), b"one inode, two names").unwrap();
    fs::hard_link(src.join("hard-a"), src.join("hard-b")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();

    fs::write(src.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(src.join("sticky")).unwrap();
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(src.join("setgid")).unwrap();
    fs::set_permissions(src.join("setgid"), fs::Permissions::from_mode(0o2750)).unwrap();
    fs::write(src.join("secret"), b"s").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(src.join("secret"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(src.join("dangling"), Some(4321), Some(8765)).unwrap();
    std::os::unix::fs::lchown(src.join("sticky"), Some(1000), Some(1000)).unwrap();

    let mut deep = src.join("deep");
    for _ in 0..200 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"200 levels down").unwrap();

    // Times last: writing into a directory changes its mtime.
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    for name in ["plain", "text", "hard-a", "secret"] {
        File::options().write(true).open(src.join(name)).unwrap().set_modified(t).unwrap();
    }
    for dir in ["sticky", "setgid"] {
        File::open(src.join(dir)).unwrap().set_modified(t).unwrap();
    }
}

/// Sets `user.` xattrs; false when the filesystem has none.
fn set_xattrs(src: &Path) -> bool {
    let flags = rustix::fs::XattrFlags::empty();
    if rustix::fs::setxattr(src.join("plain"), "user.colour", b"blue", flags).is_err() {
        eprintln!("SKIPPED xattrs: the filesystem of {} has no user xattrs", src.display());
        return false;
    }
    rustix::fs::setxattr(src.join("sticky"), "user.empty", b"", flags).unwrap();
    rustix::fs::setxattr(src.join("plain"), "user.bin", &[0, 159, 255], flags).unwrap();
    true
}

#[test]
fn a_restore_gives_back_everything_the_volume_held() {
    if !root_or_skip("the round trip (owners, setuid)") {
        return;
    }
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    populate(&src);
    let xattrs = set_xattrs(&src);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o2751)).unwrap();
    std::os::unix::fs::chown(&src, Some(1001), Some(1002)).unwrap();

    let repo = fx.open();
    let info = backup(&*repo, &src, "data");
    assert!(info.size_bytes >= SPARSE_LEN + 300_000, "{info:?}");
    let dest = fx.mkdir("dest");
    repo.restore(&info.id, &dest, &quiet).unwrap();

    let (want, got) = (describe(&src), describe(&dest));
    for (path, d) in &want {
        assert_eq!(got.get(path), Some(d), "{path:?}");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "extra entries: {:?}",
        got.keys().filter(|k| !want.contains_key(*k)).collect::<Vec<_>>()
    );
    assert_eq!(owner_mode(&dest), (0o2751, 1001, 1002), "the root's owner and mode");

    // Spot checks of what the description covers, for a readable failure.
    let (a, b) =
        (fs::metadata(dest.join("hard-a")).unwrap(), fs::metadata(dest.join("hard-b")).unwrap());
    assert_eq!(a.ino(), b.ino(), "hard links stay one inode");
    assert!(fs::symlink_metadata(dest.join("fifo")).unwrap().file_type().is_fifo());
    assert_eq!(owner_mode(&dest.join("setuid")).0, 0o4755);
    assert_eq!(owner_mode(&dest.join("secret")), (0o600, 1234, 5678));
    let sparse = fs::metadata(dest.join("sparse")).unwrap();
    assert_eq!(sparse.len(), SPARSE_LEN);
    assert!(
        sparse.blocks() * 512 < 8 << 20,
        "sparse file restored with {} bytes allocated",
        sparse.blocks() * 512
    );
    if xattrs {
        assert_eq!(user_xattrs(&dest.join("plain")).len(), 2);
    }
}

#[test]
fn the_files_land_at_the_root_of_the_destination() {
    let fx = Fixture::new();
    let src = fx.mkdir("some/deep/source");
    fs::write(src.join("top"), b"x").unwrap();
    let repo = fx.open();
    let info = backup(&*repo, &src, "v");
    let dest = fx.mkdir("dest");
    repo.restore(&info.id, &dest, &quiet).unwrap();
    let names: Vec<_> = fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["top"]);
}

#[test]
fn a_live_backup_restores_everything_the_volume_held() {
    if !root_or_skip("the round trip (owners, setuid)") {
        return;
    }
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    populate(&src);
    set_xattrs(&src);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o2751)).unwrap();
    std::os::unix::fs::chown(&src, Some(1001), Some(1002)).unwrap();
    // Past the window in which a file just written is read twice.
    std::thread::sleep(Duration::from_millis(200));

    let repo = fx.open();
    let dir = File::open(&src).unwrap().into();
    let info = repo.backup_live(dir, &src, &super::meta("data", "1v1"), None, &quiet).unwrap();
    assert!(info.changed.is_empty(), "{info:?}");
    let dest = fx.mkdir("dest");
    repo.restore(&info.id, &dest, &quiet).unwrap();
    let (want, got) = (describe(&src), describe(&dest));
    assert_eq!(got, want);
    assert_eq!(owner_mode(&dest), (0o2751, 1001, 1002), "the root's owner and mode");
}
