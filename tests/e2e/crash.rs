//! Crash injection: a seeded random workload against a real daemon,
//! killed with SIGKILL in the middle of an operation again and again.
//! After every restart: every acknowledged volume, mount count, snapshot
//! and byte is there; the operation that was cut is either done or not
//! done, never half; nothing half-made can be mounted; no storage is
//! orphaned. A failure prints its seed; `BALLAST_CRASH_SEED=N` replays
//! it, `BALLAST_CRASH_KILLS=N` sets how many kills (default 60).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Daemon, root_or_skip, wait_until};

/// xorshift64*: enough randomness for a workload, and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("a remainder below a usize is one")
    }
}

/// What the test knows was acknowledged for one volume.
#[derive(Debug, Clone, PartialEq)]
struct Vol {
    name: String,
    id: String,
    state: String,
    mounts: BTreeMap<String, u32>,
    /// The value in its `data` file (0: no file).
    data: u64,
    /// Snapshot id → the value it holds.
    snaps: BTreeMap<String, u64>,
    /// How many bulk files it has.
    bulk: usize,
}

impl Vol {
    /// A volume just made (or filled): inactive, unmounted, no snapshots.
    fn new(name: String, id: String, data: u64, bulk: usize) -> Vol {
        let (state, mounts, snaps) = ("inactive".into(), BTreeMap::new(), BTreeMap::new());
        Vol { name, id, state, mounts, data, snaps, bulk }
    }
}

struct Run {
    d: Daemon,
    rng: Rng,
    vols: Vec<Vol>,
    counter: u64,
    /// Files per volume beside `data`, so that copies take long enough to
    /// be cut.
    bulk: usize,
}

/// One operation, chosen at random from those that can run now.
#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Clone(usize, String),
    Mount(usize, String),
    Unmount(usize, String),
    Write(usize),
    Snapshot(usize),
    Revert(usize, String),
    Remove(usize),
    Restore(usize),
    Purge(usize),
}

impl Run {
    fn mountpoint(&self, v: &Vol) -> String {
        let n: String = v.id.trim_start_matches("1v").into();
        format!("{}/pools/default/volumes/v{n}", self.d.state_dir().display())
    }

    fn live_names(&self) -> Vec<String> {
        self.vols.iter().filter(|v| is_live(&v.state)).map(|v| v.name.clone()).collect()
    }

    fn pick(&mut self) -> Op {
        loop {
            let n = self.vols.len();
            let i = if n == 0 { 0 } else { self.rng.below(n) };
            let choice = self.rng.below(10);
            let fresh = format!("c{}", self.counter);
            if n == 0 || choice == 0 {
                return Op::Create(fresh);
            }
            let v = &self.vols[i];
            let idle = is_live(&v.state) && v.mounts.is_empty();
            let mount_id = format!("m{}", self.rng.below(3));
            match choice {
                1 if is_live(&v.state) => return Op::Clone(i, fresh),
                2 if is_live(&v.state) => return Op::Mount(i, mount_id),
                3 if !v.mounts.is_empty() => {
                    let id = v.mounts.keys().next().unwrap().clone();
                    return Op::Unmount(i, id);
                }
                4 if is_live(&v.state) => return Op::Write(i),
                5 if is_live(&v.state) => return Op::Snapshot(i),
                6 if idle && !v.snaps.is_empty() => {
                    let k = self.rng.below(v.snaps.len());
                    return Op::Revert(i, v.snaps.keys().nth(k).unwrap().clone());
                }
                7 if idle => return Op::Remove(i),
                8 if v.state == "removed" && !self.live_names().contains(&v.name) => {
                    return Op::Restore(i);
                }
                9 if v.state == "removed" => return Op::Purge(i),
                _ => {}
            }
        }
    }

    /// Runs `op` to its acknowledgement and records it in the model.
    fn apply(&mut self, op: &Op) {
        eprintln!("crash injection: {op:?}");
        self.counter += 1;
        let d = &self.d;
        match op.clone() {
            Op::Create(name) => {
                d.call_ok("VolumeDriver.Create", &json!({ "Name": name }).to_string());
                let id = d.id_of(&name);
                let v = Vol::new(name, id, 0, self.bulk);
                let mp = self.mountpoint(&v);
                for k in 0..self.bulk {
                    std::fs::write(format!("{mp}/bulk{k}"), [7u8; 512]).unwrap();
                }
                self.vols.push(v);
            }
            Op::Clone(i, name) => {
                let src = self.vols[i].name.clone();
                d.call_ok(
                    "VolumeDriver.Create",
                    &json!({ "Name": name, "Opts": { "from-volume": src } }).to_string(),
                );
                let v = d.settle(&format!("/v1/volumes/{name}"));
                assert_eq!(v["transitioning"], "no", "{v}");
                let (data, bulk) = (self.vols[i].data, self.vols[i].bulk);
                self.vols.push(Vol::new(name, v["id"].as_str().unwrap().into(), data, bulk));
            }
            Op::Mount(i, id) => {
                let v = &mut self.vols[i];
                d.call_ok("VolumeDriver.Mount", &json!({ "Name": v.name, "ID": id }).to_string());
                *v.mounts.entry(id).or_insert(0) += 1;
                v.state = "active".into();
            }
            Op::Unmount(i, id) => {
                let v = &mut self.vols[i];
                d.call_ok("VolumeDriver.Unmount", &json!({ "Name": v.name, "ID": id }).to_string());
                let n = v.mounts.get_mut(&id).unwrap();
                *n -= 1;
                if *n == 0 {
                    v.mounts.remove(&id);
                }
                if v.mounts.is_empty() {
                    v.state = "inactive".into();
                }
            }
            Op::Write(i) => {
                let value = self.counter;
                let mp = self.mountpoint(&self.vols[i]);
                let mut f = std::fs::File::create(format!("{mp}/data")).unwrap();
                f.write_all(value.to_string().as_bytes()).unwrap();
                f.sync_all().unwrap();
                self.vols[i].data = value;
            }
            Op::Snapshot(i) => {
                let sid = d.snapshot(&self.vols[i].id, &format!("k{}", self.counter));
                let data = self.vols[i].data;
                self.vols[i].snaps.insert(sid, data);
            }
            Op::Revert(i, sid) => {
                let id = self.vols[i].id.clone();
                d.admin_ok(
                    "POST",
                    &format!("/v1/volumes/{id}?action=reverttosnapshot"),
                    json!({ "snapshotId": sid }),
                    202,
                );
                let v = d.settle(&format!("/v1/volumes/{id}"));
                assert_eq!(v["transitioning"], "no", "{v}");
                self.vols[i].data = self.vols[i].snaps[&sid];
            }
            Op::Remove(i) => {
                let name = self.vols[i].name.clone();
                d.call_ok("VolumeDriver.Remove", &json!({ "Name": name }).to_string());
                self.vols[i].state = "removed".into();
            }
            Op::Restore(i) => {
                let id = self.vols[i].id.clone();
                d.admin_ok("POST", &format!("/v1/volumes/{id}?action=restore"), json!({}), 200);
                self.vols[i].state = "inactive".into();
            }
            Op::Purge(i) => {
                let id = self.vols[i].id.clone();
                d.admin_ok("POST", &format!("/v1/volumes/{id}?action=purge"), json!({}), 200);
                self.vols[i].state = "purged".into();
                self.vols[i].snaps.clear();
            }
        }
    }

    /// Starts `op` without waiting for it, and kills the daemon after a
    /// random delay: the kill lands before, during or after the work.
    fn apply_and_kill(&mut self, op: &Op) {
        eprintln!("crash injection: {op:?}, killed");
        self.counter += 1;
        let delay = Duration::from_millis(self.rng.below(40) as u64);
        let (body_method, body) = match op {
            Op::Create(name) => ("VolumeDriver.Create", json!({ "Name": name })),
            Op::Clone(i, name) => (
                "VolumeDriver.Create",
                json!({ "Name": name, "Opts": { "from-volume": self.vols[*i].name } }),
            ),
            Op::Mount(i, id) => {
                ("VolumeDriver.Mount", json!({ "Name": self.vols[*i].name, "ID": id }))
            }
            Op::Unmount(i, id) => {
                ("VolumeDriver.Unmount", json!({ "Name": self.vols[*i].name, "ID": id }))
            }
            Op::Remove(i) => ("VolumeDriver.Remove", json!({ "Name": self.vols[*i].name })),
            _ => ("", Value::Null),
        };
        let admin = match op {
            Op::Snapshot(i) => {
                Some((format!("/v1/volumes/{}?action=snapshot", self.vols[*i].id), json!({})))
            }
            Op::Revert(i, sid) => Some((
                format!("/v1/volumes/{}?action=reverttosnapshot", self.vols[*i].id),
                json!({ "snapshotId": sid }),
            )),
            Op::Restore(i) => {
                Some((format!("/v1/volumes/{}?action=restore", self.vols[*i].id), json!({})))
            }
            Op::Purge(i) => {
                Some((format!("/v1/volumes/{}?action=purge", self.vols[*i].id), json!({})))
            }
            _ => None,
        };
        let (socket, path, body) = match admin {
            Some((path, body)) => (self.d.admin_socket.clone(), path, body),
            None => (self.d.plugin_socket.clone(), format!("/{body_method}"), body),
        };
        // The answer may never come: the daemon dies.
        let call = std::thread::spawn(move || fire(&socket, &path, &body.to_string()));
        std::thread::sleep(delay);
        self.d.kill9();
        let _ = call.join();
        self.d.start_again();
        self.reconcile(op);
    }

    /// After the restart: the cut operation happened whole or not at all.
    /// Takes what is observed into the model when it is one of the two.
    fn reconcile(&mut self, op: &Op) {
        let d = &self.d;
        match op.clone() {
            Op::Create(name) | Op::Clone(_, name) => {
                let (status, v) = d.admin("GET", &format!("/v1/volumes/{name}"), Value::Null);
                if status == 404 {
                    return;
                }
                let v = d.settle(&format!("/v1/volumes/{}", v["id"].as_str().unwrap()));
                assert_eq!(v["transitioning"], "no", "a cut create or fill ends whole: {v}");
                let (data, bulk) = match op {
                    Op::Clone(i, _) => (self.vols[*i].data, self.vols[*i].bulk),
                    _ => (0, 0),
                };
                self.vols.push(Vol::new(name, v["id"].as_str().unwrap().into(), data, bulk));
            }
            Op::Mount(i, id) | Op::Unmount(i, id) => {
                let v = observe(d, &self.vols[i].id);
                let before = self.vols[i].clone();
                let mut after = before.clone();
                if matches!(op, Op::Mount(..)) {
                    *after.mounts.entry(id).or_insert(0) += 1;
                } else if let Some(n) = after.mounts.get_mut(&id) {
                    *n -= 1;
                    if *n == 0 {
                        after.mounts.remove(&id);
                    }
                }
                after.state = if after.mounts.is_empty() { "inactive" } else { "active" }.into();
                let seen = mounts_of(&v);
                let (was, will) = (view(&before.mounts), view(&after.mounts));
                assert!(seen == was || seen == will, "mounts {seen:?}: {before:?} / {after:?}");
                self.vols[i] = if seen == was { before } else { after };
            }
            Op::Snapshot(i) => {
                let id = self.vols[i].id.clone();
                let snaps =
                    d.admin_ok("GET", &format!("/v1/snapshots?volumeId={id}"), Value::Null, 200);
                for s in snaps["data"].as_array().unwrap() {
                    let sid = s["id"].as_str().unwrap().to_string();
                    if self.vols[i].snaps.contains_key(&sid) {
                        continue;
                    }
                    let s = d.settle(&format!("/v1/snapshots/{sid}"));
                    if s["state"] == "created" {
                        let data = self.vols[i].data;
                        self.vols[i].snaps.insert(sid, data);
                    } else {
                        assert!(
                            s["transitioningMessage"].as_str().unwrap().contains("interrupted"),
                            "{s}"
                        );
                        d.admin_ok("DELETE", &format!("/v1/snapshots/{sid}"), Value::Null, 200);
                    }
                }
            }
            Op::Revert(i, sid) => {
                let v = d.settle(&format!("/v1/volumes/{}", self.vols[i].id));
                assert_ne!(v["transitioning"], "yes");
                let seen = self.read_data(i);
                let (old, new) = (self.vols[i].data, self.vols[i].snaps[&sid]);
                assert!(seen == old || seen == new, "data {seen}: before {old}, snapshot {new}");
                self.vols[i].data = seen;
            }
            Op::Remove(i) | Op::Restore(i) | Op::Purge(i) => {
                let v = observe(d, &self.vols[i].id);
                let state = v["state"].as_str().unwrap().to_string();
                if state == "purged" {
                    self.vols[i].snaps.clear();
                }
                self.vols[i].state = state;
            }
            Op::Write(_) => {}
        }
    }

    fn read_data(&self, i: usize) -> u64 {
        let mp = self.mountpoint(&self.vols[i]);
        std::fs::read_to_string(format!("{mp}/data")).map_or(0, |s| s.parse().unwrap())
    }

    /// Every invariant, checked against the model.
    fn check(&self) {
        let d = &self.d;
        let mut listed = d.names();
        listed.sort();
        let mut live = self.live_names();
        live.sort();
        assert_eq!(listed, live, "Docker's List is exactly the acknowledged live volumes");
        let mut stored = 0;
        for (i, m) in self.vols.iter().enumerate() {
            let v = observe(d, &m.id);
            assert_eq!(v["state"], m.state, "{}: {v}", m.name);
            assert_ne!(v["transitioning"], "yes", "no job survives a settle: {v}");
            if is_live(&m.state) {
                assert_eq!(mounts_of(&v), view(&m.mounts), "{}: mount counts", m.name);
                assert_eq!(self.read_data(i), m.data, "{}: data", m.name);
                let mp = self.mountpoint(m);
                let bulk = (0..self.bulk)
                    .filter(|k| std::path::Path::new(&format!("{mp}/bulk{k}")).exists())
                    .count();
                assert_eq!(bulk, m.bulk, "{}: every file", m.name);
            }
            if m.state != "purged" {
                stored += 1;
            }
            let snaps =
                d.admin_ok("GET", &format!("/v1/snapshots?volumeId={}", m.id), Value::Null, 200);
            let mut seen: Vec<String> = snaps["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().into())
                .collect();
            seen.sort();
            let mut want: Vec<String> = m.snaps.keys().cloned().collect();
            want.sort();
            assert_eq!(seen, want, "{}: snapshots", m.name);
        }
        let pool = d.state_dir().join("pools/default");
        let entries = |dir: &str| std::fs::read_dir(pool.join(dir)).map_or(0, |e| e.count());
        assert_eq!(entries("volumes"), stored, "no orphaned volume storage");
        let snaps: usize = self.vols.iter().map(|v| v.snaps.len()).sum();
        assert_eq!(entries("snapshots"), snaps, "no orphaned snapshot");
        wait_until("interrupted work to be cleared", || entries("staging") == 0);
    }
}

/// One POST whose answer, if any, is read and dropped.
fn fire(socket: &std::path::Path, path: &str, body: &str) {
    use std::io::Read;
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else { return };
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_ok() {
        let _ = s.read_to_end(&mut Vec::new());
    }
}

fn is_live(state: &str) -> bool {
    matches!(state, "inactive" | "active" | "requested")
}

fn observe(d: &Daemon, id: &str) -> Value {
    d.settle(&format!("/v1/volumes/{id}"))
}

/// Mount IDs and the total count, as the volume resource shows them.
type Mounts = (Vec<String>, u64);

fn mounts_of(v: &Value) -> Mounts {
    let ids = v["mountIds"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut ids: Vec<String> = ids.iter().map(|i| i.as_str().unwrap().to_string()).collect();
    ids.sort();
    (ids, v["mountCount"].as_u64().unwrap())
}

fn view(m: &BTreeMap<String, u32>) -> Mounts {
    (m.keys().cloned().collect(), m.values().map(|n| u64::from(*n)).sum())
}

#[test]
fn sigkill_at_random_points_loses_nothing_acknowledged() {
    if !root_or_skip() {
        return;
    }
    #[allow(clippy::cast_possible_truncation, reason = "the seed is the clock's low 64 bits")]
    let seed: u64 = std::env::var("BALLAST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        })
        | 1;
    let kills: usize =
        std::env::var("BALLAST_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    eprintln!("crash injection: seed {seed} (replay with BALLAST_CRASH_SEED={seed})");
    let mut run = Run {
        d: Daemon::private_with("crash-loop", "trash_retention = \"1h\"\n"),
        rng: Rng(seed),
        vols: Vec::new(),
        counter: 0,
        bulk: 300,
    };
    let guard = SeedOnPanic(seed);
    let started = std::time::Instant::now();
    let mut ops = 0;
    for _ in 0..kills {
        for _ in 0..run.rng.below(6) {
            let op = run.pick();
            run.apply(&op);
            ops += 1;
        }
        let op = loop {
            let op = run.pick();
            if !matches!(op, Op::Write(_)) {
                break op;
            }
        };
        run.apply_and_kill(&op);
        run.check();
    }
    std::mem::forget(guard);
    eprintln!(
        "crash injection: {kills} kills, {ops} acknowledged operations, {} volumes, {:.1?}",
        run.vols.len(),
        started.elapsed()
    );
    // Docker's view at the end: every mount released, everything removed.
    for i in 0..run.vols.len() {
        for (id, n) in run.vols[i].mounts.clone() {
            for _ in 0..n {
                run.apply(&Op::Unmount(i, id.clone()));
            }
        }
    }
}

/// Prints the seed when the test fails, however it fails.
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("crash injection FAILED with seed {0}: BALLAST_CRASH_SEED={0}", self.0);
        }
    }
}
