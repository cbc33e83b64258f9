//! Trees no archiver makes, forged with the repository's key: a restore
//! refuses one beyond its bounds at once, writing nothing, and stops when
//! cancelled. And a volume too deep to back up, refused in a few words.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::super::forge::{Forge, dag, dir};
use super::super::{Error, Repository};
use super::{Fixture, quiet};

/// The message of a restore refused with nothing written into `dest`.
fn refused(repo: &dyn Repository, id: &str, fx: &Fixture) -> (String, Duration) {
    let dest = fx.mkdir("dest");
    let started = Instant::now();
    let result = repo.restore(id, &dest, &quiet);
    let took = started.elapsed();
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "wrote into the destination");
    match result {
        Err(Error::Refused(m)) => (m, took),
        other => panic!("restore of a crafted tree: {other:?}"),
    }
}

#[test]
fn a_tree_naming_one_subtree_twice_at_46_levels_is_refused_within_seconds() {
    let fx = Fixture::new();
    // 2^47 entries from 47 objects.
    let id = dag(&fx.target, &fx.path("state"), 46);
    let (m, took) = refused(&*fx.open(), &id, &fx);
    assert!(m.contains("more than 50000000 entries"), "{m}");
    assert!(m.contains("damaged or crafted backup"), "{m}");
    assert!(m.len() < 300, "one short message: {m}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_directory_of_two_million_entries_is_refused_before_it_is_read() {
    let fx = Fixture::new();
    let mut forge = Forge::new(&fx.target, &fx.path("state"));
    let empty = forge.tree(Vec::new());
    // The listing is written by hand: two million nodes in memory would
    // cost more than the test means to show.
    let one = serde_json::to_string(&dir("d0000000", empty)).unwrap();
    let (head, tail) = one.split_once("d0000000").unwrap();
    let mut json = String::from("{\"nodes\":[");
    for i in 0..2_000_000 {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!("{head}d{i:07}{tail}"));
    }
    json.push_str("]}\n");
    assert!(json.len() > 128 << 20, "{} bytes", json.len());
    let root = forge.raw_tree(json.as_bytes(), true);
    drop(json);
    let id = forge.seal(root);
    let (m, took) = refused(&*fx.open(), &id, &fx);
    assert!(m.contains("MiB, more than the 128 MiB a restore reads"), "{m}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_restore_told_to_stop_ends_soon_with_nothing_written() {
    let fx = Fixture::new();
    // 2^23 entries: within the bounds, and long to walk.
    let id = dag(&fx.target, &fx.path("state"), 22);
    let dest = fx.mkdir("dest");
    let stop = Arc::new(AtomicBool::new(false));
    let repo = fx.open();
    let (result, took) = std::thread::scope(|s| {
        let restoring = s.spawn(|| {
            let started = Instant::now();
            (repo.restore_until(&id, &dest, &quiet, &stop), started)
        });
        std::thread::sleep(Duration::from_millis(500));
        let asked = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let (result, _) = restoring.join().unwrap();
        (result, asked.elapsed())
    });
    match result {
        Err(Error::Failed(m)) => assert!(m.ends_with("cancelled"), "{m}"),
        other => panic!("a cancelled restore: {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "wrote into the destination");
}

#[test]
fn a_path_longer_than_path_max_is_refused_by_its_depth_and_first_characters() {
    let fx = Fixture::new();
    let mut forge = Forge::new(&fx.target, &fx.path("state"));
    let name = "x".repeat(200);
    let mut tree = forge.tree(Vec::new());
    for _ in 0..25 {
        tree = forge.tree(vec![dir(&name, tree)]);
    }
    let id = forge.seal(tree);
    let (m, _) = refused(&*fx.open(), &id, &fx);
    assert!(m.contains("bytes) is longer than a path below the volume may be"), "{m}");
    // Where it stops depends on the destination's own length: 4,096 bytes
    // hold 20 or 21 levels of 201.
    assert!(m.contains("…\" (depth 20,") || m.contains("…\" (depth 21,"), "{m}");
    assert!(m.contains(&format!("\"{}…", &name[..100])), "{m}");
    assert!(!m.contains(&fx.path("").display().to_string()), "names a host path: {m}");
    assert!(m.len() < 400, "{m}");
}

#[test]
fn a_forged_tree_within_the_bounds_restores() {
    // The forging itself is sound: a small DAG restores, each copy whole.
    let fx = Fixture::new();
    let id = dag(&fx.target, &fx.path("state"), 3);
    let dest = fx.mkdir("dest");
    fx.open().restore(&id, &dest, &quiet).unwrap();
    assert!(dest.join("a/b/a").is_dir());
    assert!(dest.join("b/a/b").is_dir());
    assert_eq!(std::fs::read_dir(dest.join("b/b/b")).unwrap().count(), 0);
}

#[test]
fn a_volume_deeper_than_path_max_is_refused_in_a_short_message_without_host_paths() {
    use crate::tree::testing::{make_deep, open_path, write_at};
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    // 2,100 levels of "d/": more than PATH_MAX (4,096 bytes) below src.
    write_at(make_deep(open_path(&src), 2100), c"deepest", b"x");
    let m = match fx.open().backup(&src, &super::meta("v", "1v1"), None, &quiet) {
        Err(Error::Failed(m)) => m,
        other => panic!("a backup of a tree deeper than PATH_MAX: {other:?}"),
    };
    assert!(m.len() < 500, "{} characters: {m}", m.len());
    assert!(!m.contains(&fx.path("").display().to_string()), "names a host path: {m}");
    assert!(m.contains("depth"), "names the depth: {m}");
    assert!(m.contains("d/d/d/d"), "names the path below the volume: {m}");
}
