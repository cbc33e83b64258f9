//! A repository whose files were altered: restore and verify say
//! Corrupt, naming the backup, and nothing panics.

use std::fs;
use std::path::{Path, PathBuf};

use super::super::Error;
use super::{Fixture, backup, quiet};
use ballast_test_support::noise;

/// Every pack file of the repository, largest first.
fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = fs::read_dir(repo.join("data"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    packs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    packs
}

/// Flips 16 bytes in the middle of `file`.
fn flip(file: &Path) {
    let mut data = fs::read(file).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 16] {
        *b ^= 0xa5;
    }
    fs::write(file, data).unwrap();
}

/// The message of a Corrupt error, which names the backup.
fn corrupt(r: Result<(), Error>, id: &str) -> String {
    match r {
        Err(Error::Corrupt(m)) => {
            assert!(m.contains(id), "names the backup {id}: {m}");
            assert!(!m.contains("Backtrace"), "one plain message: {m}");
            m
        }
        other => panic!("{other:?}"),
    }
}

fn setup() -> (Fixture, String) {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    fs::write(src.join("big"), noise(7, 3 << 20)).unwrap();
    fs::write(src.join("small"), b"small").unwrap();
    let id = backup(&*fx.open(), &src, "v").id;
    (fx, id)
}

#[test]
fn altered_file_data_fails_restore_and_verify_as_corrupt() {
    let (fx, id) = setup();
    let packs = packs(&fx.path("repo"));
    flip(&packs[0]);
    let pack = packs[0].file_name().unwrap().to_string_lossy().to_string();
    let repo = fx.open();
    let m = corrupt(repo.restore(&id, &fx.mkdir("dest"), &quiet), &id);
    assert!(m.contains(&pack[..8]), "names the pack {pack}: {m}");
    let m = corrupt(repo.verify(&id), &id);
    assert!(m.contains(&pack[..8]), "names the pack {pack}: {m}");
}

#[test]
fn altered_trees_fail_restore_and_verify_as_corrupt() {
    let (fx, id) = setup();
    // The smallest pack holds the trees.
    flip(packs(&fx.path("repo")).last().unwrap());
    let repo = fx.open();
    corrupt(repo.restore(&id, &fx.mkdir("dest"), &quiet), &id);
    corrupt(repo.verify(&id), &id);
}
