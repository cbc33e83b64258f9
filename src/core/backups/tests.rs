//! Restores from backups that fail or must be stopped, in a daemon's
//! core: the volume is left usable or clearly failed, never stuck.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backup::BackupState;
use crate::config::Config;
use crate::core::Ballast;
use crate::volume::{State, Transitioning, Volume};

/// A core with a dir pool and a `file://` backup target `nas`.
fn open(dir: &Path) -> Ballast {
    let password = dir.join("password");
    std::fs::write(&password, "correct horse battery staple\n").unwrap();
    let text = format!(
        "[[backup_target]]\nname = \"nas\"\nurl = \"file://{}\"\npassword_file = \"{}\"\n",
        dir.join("repo").display(),
        password.display()
    );
    let mut c = Config::parse(&text, Path::new("/unused")).unwrap();
    c.pools[0].path = dir.join("pool");
    Ballast::open(&c, dir).unwrap()
}

/// Waits for the job on volume `name` to end; returns the volume.
async fn settled(b: &Ballast, name: &str) -> Arc<Volume> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = b.get(name).unwrap();
        if v.transitioning != Transitioning::Yes {
            return v;
        }
        assert!(Instant::now() < deadline, "still busy: {}", v.transitioning_message);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Volume `name` holding `files`, backed up; the backup's id.
async fn backed_up(b: &Ballast, name: &str, files: &[(&str, Vec<u8>)]) -> String {
    let v = b.create(name, BTreeMap::new()).await.unwrap();
    let mp = b.mountpoint(&v).unwrap();
    for (file, data) in files {
        std::fs::write(mp.join(file), data).unwrap();
    }
    let backup = b.create_backup(Some(name), None, None).await.unwrap();
    let done = b.backup_done(backup.id).await.unwrap();
    assert_eq!(done.state, BackupState::Created, "{}", done.message);
    done.public_id()
}

/// Flips bytes in the middle of the repository's largest pack (data).
fn tamper(repo: &Path) {
    let mut packs: Vec<_> = std::fs::read_dir(repo.join("data"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    packs.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    let mut data = std::fs::read(&packs[0]).unwrap();
    let mid = data.len() / 2;
    for byte in &mut data[mid..mid + 16] {
        *byte ^= 0xa5;
    }
    std::fs::write(&packs[0], data).unwrap();
}

fn from_backup(id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("from-backup".to_string(), id.to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_in_place_leaves_the_volume_usable_and_says_the_data_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let id = backed_up(&b, "v", &[("big", ballast_test_support::noise(1, 4 << 20))]).await;
    let mp = b.mountpoint(&b.get("v").unwrap()).unwrap();
    std::fs::write(mp.join("written-later"), b"keep me").unwrap();
    tamper(&dir.path().join("repo"));

    b.restore_from_backup("v", &id).await.unwrap();
    let v = settled(&b, "v").await;
    assert_eq!(v.transitioning, Transitioning::No, "{}", v.transitioning_message);
    assert_eq!(v.state, State::Inactive);
    let m = &v.transitioning_message;
    assert!(m.contains("failed; the data is unchanged"), "{m}");
    assert!(m.contains("is damaged"), "says why: {m}");
    assert_eq!(std::fs::read(mp.join("written-later")).unwrap(), b"keep me");
    // Usable as before: it mounts.
    b.mount("v", "c1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_into_a_new_volume_keeps_none_of_its_partial_data() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let big = ballast_test_support::noise(2, 6 << 20);
    let id = backed_up(&b, "v", &[("big", big), ("small", b"small".to_vec())]).await;
    tamper(&dir.path().join("repo"));

    b.create("w", from_backup(&id)).await.unwrap();
    let w = settled(&b, "w").await;
    assert_eq!(w.transitioning, Transitioning::Error);
    let m = &w.transitioning_message;
    assert!(m.contains("what was written was deleted: remove the volume"), "{m}");
    let mp = b.mountpoint(&w).unwrap();
    assert_eq!(std::fs::read_dir(&mp).unwrap().count(), 0, "partial files are left");
    assert_eq!(w.used_bytes, 0);
    b.remove("w").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_backup_of_two_to_the_47_entries_fails_its_volume_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let target = b.backup_targets().remove(0);
    let restic_id = crate::backup::forge::dag(&target, dir.path(), 46);

    let started = Instant::now();
    b.create("w", from_backup(&restic_id)).await.unwrap();
    let w = settled(&b, "w").await;
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!(w.transitioning, Transitioning::Error);
    assert!(w.transitioning_message.contains("damaged or crafted backup"), "{w:?}");
    // Neither the volume nor the backup is held.
    b.remove("w").await.unwrap();
    b.remove_backup(&restic_id[..12]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_volume_being_restored_cancels_the_restore() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let target = b.backup_targets().remove(0);
    // 2^23 entries: within the bounds, and long to restore.
    let restic_id = crate::backup::forge::dag(&target, dir.path(), 22);

    let w = b.create("w", from_backup(&restic_id)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.inner.locks.is_restoring(w.id) {
        assert!(Instant::now() < deadline, "the restore never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    b.remove("w").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(b.get("w").is_err(), "the volume is still there");
    let gone = b.volume_by_id(w.id).unwrap();
    assert_eq!(gone.state, State::Removed);
    b.remove_backup(&restic_id[..12]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_by_the_name_its_listing_shows() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let id = backed_up(&b, "v", &[("f", b"data".to_vec())]).await;
    let name = b.find_backup(&id).unwrap().name.clone();
    assert_eq!(name, format!("v-{id}"));

    b.create("w", from_backup(&name)).await.unwrap();
    let w = settled(&b, "w").await;
    assert_eq!(w.transitioning, Transitioning::No, "{}", w.transitioning_message);
    assert_eq!(std::fs::read(b.mountpoint(&w).unwrap().join("f")).unwrap(), b"data");
    // One made elsewhere is named after its restic id once listed.
    let target = b.backup_targets().remove(0);
    let restic_id = crate::backup::forge::dag(&target, dir.path(), 1);
    b.sync_backups("nas").await.unwrap();
    let listed = b.find_backup(&format!("forged-{}", &restic_id[..8])).unwrap();
    assert_eq!(listed.restic_id.as_deref(), Some(restic_id.as_str()));
}
