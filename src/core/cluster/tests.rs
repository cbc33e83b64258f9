//! The core's side of the cluster against a cluster in memory that does
//! what it is told, when it is told: the races that etcd's timing makes
//! rare, made certain.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::LeaseState;
use crate::cluster::{
    Change, Cluster, Error as ClusterError, Fut, Health, Holder, Node, Record, Ticket,
};
use crate::config::Config;
use crate::core::Ballast;

#[derive(Default)]
struct Fake {
    holders: Mutex<HashMap<String, Vec<Holder>>>,
    /// How long a hold's answer takes (it is applied at once).
    hold_delay: Mutex<Duration>,
    /// How long a release takes before it is applied.
    release_delay: Mutex<Duration>,
    /// What unregister answers: Ok(removed?) or Moved.
    unregister_moved: Mutex<bool>,
    unregisters: AtomicUsize,
    revision: AtomicUsize,
    health: Mutex<Option<watch::Sender<Health>>>,
    /// The records handed over, in order.
    handed: Mutex<Vec<Record>>,
}

impl Fake {
    fn health(&self) -> watch::Sender<Health> {
        self.health.lock().unwrap().clone().unwrap()
    }
}

impl Cluster for Fake {
    fn node(&self) -> &str {
        "a"
    }
    fn mount_wait(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn lease_ttl(&self) -> Duration {
        Duration::from_secs(600)
    }
    fn register(&self, _: Record) -> Fut<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn unregister<'a>(&'a self, name: &'a str, _: &'a str) -> Fut<'a, bool> {
        Box::pin(async move {
            self.unregisters.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            // As etcd: refused while any host holds it, this one too.
            if let Some(h) = self.holders(name).into_iter().next() {
                return Err(ClusterError::Held {
                    name: name.into(),
                    node: h.node,
                    mounts: h.mounts,
                });
            }
            if *self.unregister_moved.lock().unwrap() {
                Err(ClusterError::Moved { name: name.into() })
            } else {
                Ok(true)
            }
        })
    }
    fn hold<'a>(&'a self, name: &'a str, _: &'a str, mounts: u32, _: bool) -> Fut<'a, Ticket> {
        Box::pin(async move {
            // Applied in etcd at once; the answer comes late.
            let h = Holder { node: "a".into(), mounts, since_ms: 0 };
            self.holders.lock().unwrap().insert(name.into(), vec![h]);
            let revision = i64::try_from(self.revision.fetch_add(1, Ordering::SeqCst)).unwrap() + 1;
            let d = *self.hold_delay.lock().unwrap();
            tokio::time::sleep(d).await;
            let lease = match *self.health().borrow() {
                Health::Up { lease, .. } => lease,
                _ => 0,
            };
            Ok(Ticket { lease, revision })
        })
    }
    fn request_move<'a>(&'a self, _: &'a str, _: &'a str) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn cancel_move<'a>(&'a self, _: &'a str) -> Fut<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn hand_over(&self, record: Record) -> Fut<'_, ()> {
        Box::pin(async move {
            self.handed.lock().unwrap().push(record);
            Ok(())
        })
    }
    fn release<'a>(&'a self, name: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            let d = *self.release_delay.lock().unwrap();
            tokio::time::sleep(d).await;
            // This host's holding alone, as etcd deletes its own key.
            let mut holders = self.holders.lock().unwrap();
            if let Some(all) = holders.get_mut(name) {
                all.retain(|h| h.node != "a");
                if all.is_empty() {
                    holders.remove(name);
                }
            }
            Ok(())
        })
    }
    fn holders(&self, name: &str) -> Vec<Holder> {
        self.holders.lock().unwrap().get(name).cloned().unwrap_or_default()
    }
    fn nodes(&self) -> Fut<'_, Vec<Node>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn changes(&self) -> Option<mpsc::Receiver<Change>> {
        None
    }
    fn health(&self) -> watch::Receiver<Health> {
        self.health().subscribe()
    }
}

fn up(lease: i64) -> Health {
    Health::Up { safe_until: Instant::now() + Duration::from_secs(600), lease }
}

fn open(dir: &Path) -> (Ballast, Arc<Fake>) {
    open_with(dir, "")
}

/// A core whose config is `text` and a dir pool in `dir`.
fn open_with(dir: &Path, text: &str) -> (Ballast, Arc<Fake>) {
    let mut c = Config::parse(text, Path::new("/unused")).unwrap();
    c.pools[0].path = dir.join("pool");
    let b = Ballast::open(&c, dir).unwrap();
    let fake = Arc::new(Fake::default());
    *fake.health.lock().unwrap() = Some(watch::Sender::new(up(1)));
    b.join(fake.clone());
    (b, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_whose_lease_is_lost_while_it_runs_does_not_stand() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    b.create("x", BTreeMap::new()).await.unwrap();
    *fake.hold_delay.lock().unwrap() = Duration::from_millis(400);
    let mounting = {
        let b = b.clone();
        tokio::spawn(async move { b.mount("x", "m1").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.health().send_replace(Health::Lost);
    let refused = mounting.await.unwrap().unwrap_err();
    assert!(refused.to_string().contains("lost its lease"), "{refused}");
    assert_eq!(b.get("x").unwrap().mount_count(), 0, "the mount was undone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ending_during_a_mount_does_not_let_go_of_the_mounts_holding() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    b.create("y", BTreeMap::new()).await.unwrap();
    b.snapshot("y", None).await.unwrap();
    *fake.hold_delay.lock().unwrap() = Duration::from_millis(500);
    b.mount("y", "m1").await.unwrap();
    // The snapshot's job ended meanwhile; its holding's drop ran.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.get("y").unwrap().mount_count(), 1);
    assert_eq!(fake.holders("y").len(), 1, "still held for the mount");
    b.unmount("y", "m1").await.unwrap();
    // Let go after the last use: the Unmount, or the snapshot's job if a
    // busy machine makes it end later.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fake.holders("y").is_empty() {
        assert!(Instant::now() < deadline, "never let go after the last use");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_unmount_answers_before_etcd_lets_go_and_a_mount_right_after_keeps_the_holding() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    b.create("r", BTreeMap::new()).await.unwrap();
    b.mount("r", "m1").await.unwrap();
    *fake.release_delay.lock().unwrap() = Duration::from_secs(2);
    let t = Instant::now();
    b.unmount("r", "m1").await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "the Unmount waited for etcd: {:?}", t.elapsed());
    assert_eq!(b.get("r").unwrap().mount_count(), 0);
    // A Mount that comes before the release ran keeps the holding.
    *fake.release_delay.lock().unwrap() = Duration::ZERO;
    b.mount("r", "m2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.holders("r").len(), 1, "let go while mounted");
    assert_eq!(fake.holders("r")[0].mounts, 1);
    b.unmount("r", "m2").await.unwrap();
    // And the clean stop's wait sees the release through.
    b.settle_releases(Duration::from_secs(30)).await;
    assert!(fake.holders("r").is_empty(), "never let go after the last Unmount");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_right_after_the_last_unmount_here_does_not_wait_for_its_own_release() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    b.create("brief", BTreeMap::new()).await.unwrap();
    b.mount("brief", "m1").await.unwrap();
    b.unmount("brief", "m1").await.unwrap();
    let t = Instant::now();
    b.remove("brief").await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "waited {:?} for itself", t.elapsed());
    assert!(b.get("brief").is_err(), "the removal did not stand");
    assert!(fake.holders("brief").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_waits_a_moment_for_another_hosts_holding_to_go_and_names_it_if_it_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    let elsewhere = |mounts| Holder { node: "b".into(), mounts, since_ms: 0 };
    b.create("gone", BTreeMap::new()).await.unwrap();
    fake.holders.lock().unwrap().insert("gone".into(), vec![elsewhere(1)]);
    let letting_go = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            fake.holders.lock().unwrap().remove("gone");
        })
    };
    b.remove("gone").await.unwrap();
    letting_go.await.unwrap();
    assert!(b.get("gone").is_err(), "the removal did not stand");

    b.create("kept", BTreeMap::new()).await.unwrap();
    fake.holders.lock().unwrap().insert("kept".into(), vec![elsewhere(2)]);
    let t = Instant::now();
    let err = b.remove("kept").await.unwrap_err().to_string();
    assert!(t.elapsed() >= super::hold::RELEASE_WAIT, "refused before the wait: {:?}", t.elapsed());
    assert!(err.contains("in use on host b (2 mount(s))"), "{err}");
    assert!(b.get("kept").is_ok(), "removed while held elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_a_name_whose_old_volume_cannot_be_closed_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    let v = b.create("z", BTreeMap::new()).await.unwrap();
    b.mount("z", "m1").await.unwrap();
    *fake.unregister_moved.lock().unwrap() = true;
    let r = Record {
        name: "z".into(),
        key: "ffffffffffffffff".into(),
        pool: v.pool.clone(),
        opts: BTreeMap::new(),
        description: String::new(),
        size_bytes: None,
        home: "b".into(),
        created_ms: 0,
        archive: None,
    };
    let done = tokio::time::timeout(Duration::from_secs(5), b.apply(Change::Put(r))).await;
    assert!(done.is_ok(), "mirroring did not end");
    assert_eq!(b.get("z").unwrap().id, v.id, "the mounted one stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_and_regained_while_the_core_was_busy_still_fences() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    b.create("w", BTreeMap::new()).await.unwrap();
    b.mount("w", "m1").await.unwrap();
    // Lost and regained faster than the core looks: a new lease id.
    *fake.hold_delay.lock().unwrap() = Duration::from_millis(300);
    fake.health().send_replace(Health::Lost);
    fake.health().send_replace(up(2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = b.get("w").unwrap();
    assert_eq!(b.lease_state(&v), LeaseState::Fenced);
    // Its container stopped and started again at once (`docker restart`):
    // the fence ended with the last Unmount, not with the release after.
    *fake.hold_delay.lock().unwrap() = Duration::ZERO;
    b.unmount("w", "m1").await.unwrap();
    b.mount("w", "m2").await.expect("mounts again once its containers stopped");
    assert_eq!(b.lease_state(&b.get("w").unwrap()), LeaseState::HeldHere);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_without_a_volume_whose_bytes_are_here_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _fake) = open(dir.path());
    b.create("kept", BTreeMap::new()).await.unwrap();
    b.apply(Change::All { records: Vec::new(), unreadable: Vec::new(), moves: Vec::new() }).await;
    let v = b.get("kept").expect("still there");
    assert!(v.transitioning_message.contains("registry"), "{}", v.transitioning_message);
    assert_eq!(b.removed().unwrap().len(), 0, "nothing went to the trash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holders_event_does_not_fence_a_fresh_holding() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    b.create("s", BTreeMap::new()).await.unwrap();
    b.mount("s", "m1").await.unwrap();
    // An event from before this host's holding (revision 0): no holders.
    fake.holders.lock().unwrap().remove("s");
    b.apply(Change::Holders { name: "s".into(), holders: Vec::new(), revision: 0 }).await;
    let v = b.get("s").unwrap();
    assert_ne!(b.lease_state(&v), LeaseState::Fenced);
}

/// A `file://` backup target `nas` in `dir`, as config text.
fn target_in(dir: &Path) -> String {
    let password = dir.join("password");
    std::fs::write(&password, "correct horse battery staple\n").unwrap();
    format!(
        "[[backup_target]]\nname = \"nas\"\nurl = \"file://{}\"\npassword_file = \"{}\"\n",
        dir.join("repo").display(),
        password.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_volume_is_handed_over_only_after_its_backup_and_comes_back_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open_with(dir.path(), &target_in(dir.path()));
    let opts = BTreeMap::from([("follow".to_string(), "true".to_string())]);
    b.create("f", opts).await.unwrap();
    let mp = b.mount("f", "m1").await.unwrap();
    std::fs::write(mp.join("data"), b"written on a").unwrap();

    // Asked for while mounted here: it stays.
    b.apply(Change::Move { name: "f".into(), to: "b".into() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.handed.lock().unwrap().is_empty(), "a mounted volume was handed over");
    b.unmount("f", "m1").await.unwrap();

    b.apply(Change::Move { name: "f".into(), to: "b".into() }).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        if let Some(r) = fake.handed.lock().unwrap().first().cloned() {
            break r;
        }
        assert!(Instant::now() < deadline, "never handed over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record.home, "b");
    let archive = record.archive.clone().expect("the record names the backup");
    assert_eq!(archive.target, "nas");
    let v = b.get("f").unwrap();
    assert_eq!(v.state, crate::volume::State::Requested, "freed before the record changed");
    assert!(!mp.join("data").exists(), "the bytes stayed writable here");
    let b_id = v.archived_in.expect("archived");
    assert_eq!(b.find_backup(&format!("1b{b_id}")).unwrap().restic_id, Some(archive.snapshot));

    // The registry names b now: a Mount here asks, it is not mounted.
    b.apply(Change::Put(record.clone())).await;
    let v = b.get("f").unwrap();
    assert_eq!(v.cluster.as_ref().unwrap().home, "b");
    assert!(b.must_fetch(&v));

    // Handed back: the first Mount restores what was written.
    b.apply(Change::Put(Record { home: "a".into(), ..record })).await;
    let mp = b.mount("f", "m2").await.unwrap();
    assert_eq!(std::fs::read(mp.join("data")).unwrap(), b"written on a");
    b.unmount("f", "m2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_that_moved_here_never_mounts_empty_before_its_archive_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _fake) = open_with(dir.path(), &target_in(dir.path()));
    let archive = crate::cluster::Archive { target: "nas".into(), snapshot: "ab".repeat(32) };
    let r = Record {
        name: "arrived".into(),
        key: "0123456789abcdef".into(),
        pool: "default".into(),
        opts: BTreeMap::from([("follow".to_string(), "true".to_string())]),
        description: String::new(),
        size_bytes: None,
        home: "a".into(),
        created_ms: 0,
        archive: Some(archive),
    };
    b.apply(Change::Put(r)).await;
    // As after a restart before the registry was read again.
    b.inner.cluster.archives.lock().unwrap().clear();
    let refused = b.mount("arrived", "m1").await.unwrap_err();
    assert!(refused.to_string().contains("registry"), "{refused}");
    let v = b.get("arrived").unwrap();
    assert_eq!(v.state, crate::volume::State::Requested, "not started empty");
    assert_eq!(v.mount_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_that_outlives_the_lease_swaps_nothing_in() {
    let dir = tempfile::tempdir().unwrap();
    let (b, fake) = open(dir.path());
    b.create("rv", BTreeMap::new()).await.unwrap();
    let mp = b.mount("rv", "m1").await.unwrap();
    // Enough bytes that the copy is still running when the lease goes.
    std::fs::write(mp.join("big"), vec![7u8; 64 << 20]).unwrap();
    std::fs::write(mp.join("f"), b"before").unwrap();
    b.unmount("rv", "m1").await.unwrap();
    let s = b.snapshot("rv", Some("s1".into())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.find_snapshot(&s.public_id()).unwrap().state != crate::snapshot::SnapState::Created {
        assert!(Instant::now() < deadline, "the snapshot never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mp = b.mount("rv", "m2").await.unwrap();
    std::fs::write(mp.join("f"), b"after").unwrap();
    b.unmount("rv", "m2").await.unwrap();

    b.revert("rv", "s1").await.unwrap();
    fake.health().send_replace(Health::Lost);
    let deadline = Instant::now() + Duration::from_secs(60);
    let v = loop {
        let v = b.get("rv").unwrap();
        if v.transitioning != crate::volume::Transitioning::Yes {
            break v;
        }
        assert!(Instant::now() < deadline, "the revert never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(v.transitioning_message.contains("lost its lease"), "{}", v.transitioning_message);
    fake.health().send_replace(up(2));
    let mp = b.mount("rv", "m3").await.unwrap();
    assert_eq!(std::fs::read(mp.join("f")).unwrap(), b"after", "the snapshot was swapped in");
}
