//! Operations side by side on one repository.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::Progress;
use super::{Fixture, backup, meta, quiet};
use ballast_test_support::noise;

#[test]
fn a_prune_during_a_backup_deletes_nothing_the_backup_uses() {
    let fx = Fixture::new();
    let (old, new) = (fx.mkdir("old"), fx.mkdir("new"));
    let shared = noise(1, 8 << 20);
    fs::write(old.join("shared"), &shared).unwrap();
    fs::write(new.join("shared"), &shared).unwrap();
    // Enough new data that the prune runs while the backup still reads.
    for i in 0..8 {
        fs::write(new.join(format!("more{i}")), noise(100 + i, 8 << 20)).unwrap();
    }
    let repo = fx.open();
    let gone = backup(&*repo, &old, "old");

    let started = AtomicBool::new(false);
    let on = |p: Progress| {
        if p.bytes_done > 0 {
            started.store(true, Ordering::SeqCst);
        }
    };
    let kept = std::thread::scope(|s| {
        let b = s.spawn(|| repo.backup(&new, &meta("new", "1vnew"), None, &on).unwrap());
        while !started.load(Ordering::SeqCst) && !b.is_finished() {
            std::thread::yield_now();
        }
        assert!(!b.is_finished(), "the backup ended too soon: the test proves nothing");
        // Forgets the only finished snapshot that uses `shared`, and prunes.
        repo.remove(&gone.id).unwrap();
        b.join().unwrap()
    });

    let dest = fx.mkdir("dest");
    repo.restore(&kept.id, &dest, &quiet).unwrap();
    assert_eq!(fs::read(dest.join("shared")).unwrap(), shared);
    repo.verify(&kept.id).unwrap();
}
