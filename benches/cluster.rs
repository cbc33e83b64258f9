//! `cargo bench --bench cluster`: ballast's cluster mode (docs/cluster.md)
//! on one machine, each row next to a peer measured in the same run.
//!
//! A three-member etcd on loopback (the end-to-end tests' fixture) and two
//! private daemons, hosts A and B, whose default pool is one `dir` pool
//! with `scope = "global"` (a temporary directory stands in for the shared
//! filesystem). They are spoken to on their plugin sockets as Docker does;
//! only the `docker run` row needs Docker's engine.
//!
//! - Mount+Unmount of a cluster volume next to a volume of the same daemon
//!   made with `-o cluster=false`: what holding it in etcd costs; and that
//!   difference next to the same two etcd writes made by etcd's client.
//! - The same pair as users meet it: `docker run --rm -v VOL:/data true`
//!   through the private Docker engine, A serving it as driver
//!   `ballast-bench-cluster`, next to a `-o cluster=false` volume and to
//!   Docker's `local` driver (skipped without an engine).
//! - Failover: B's first successful Mount of a volume A holds, from a
//!   `kill -9` of A's daemon, next to the lease's TTL + 1 s.
//! - Get and List on B of volumes made on A (mirrored from the registry)
//!   next to the same calls on A for its own.
//! - A move of a `-o follow=true` volume of `BALLAST_BENCH_MOVE_MIB` MiB
//!   (1,024) from A's local pool to B's, through an S3 target (s3s-fs):
//!   from B's first Mount call to the Mount that succeeds (when Docker
//!   starts the container), page cache dropped, next to a plain read of
//!   the same files on A from a cold cache; then the move back after 1 %
//!   of the bytes changed, next to the first move; and the first move
//!   next to the same done by hand with Debian's restic (`restic backup`
//!   on A, `restic restore` on B, the same S3 server).
//!
//! Needs root and Debian's `etcd` (package etcd-server); skipped (saying
//! why) without them. Knobs: `BALLAST_BENCH_VOLUMES` (default 10,000),
//! `BALLAST_BENCH_ROUNDS` (Mount+Unmount rounds, 200),
//! `BALLAST_BENCH_FAILOVERS` (3), `BALLAST_BENCH_LEASE_TTL` (seconds, 5;
//! at least 2), `BALLAST_BENCH_GETS` (2,000), `BALLAST_BENCH_MOVE_MIB`
//! (1,024; the move rows need s3s-fs, see scripts/test).

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

#[path = "../tests/e2e/hosts/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::path::Path;
use std::time::{Duration, Instant};

use ballast_test_support::s3server::{ACCESS_KEY, S3Server, SECRET_KEY};
use etcd::Etcd;
use harness::{Conn, Daemon};
use serde_json::{Value, json};

struct Row {
    what: String,
    ballast: String,
    peer: String,
    ratio: String,
    target: String,
}

/// A number from the environment, at least 1.
fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default).max(1)
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root (it starts ballast); skipped");
        return;
    }
    if !harness::have("etcd") {
        eprintln!("`etcd` is not installed (apt-get install etcd-server); skipped");
        return;
    }
    let volumes = usize::try_from(knob("BALLAST_BENCH_VOLUMES", 10_000)).unwrap();
    let rounds = usize::try_from(knob("BALLAST_BENCH_ROUNDS", 200)).unwrap();
    let failovers = usize::try_from(knob("BALLAST_BENCH_FAILOVERS", 3)).unwrap();
    let ttl = Duration::from_secs(knob("BALLAST_BENCH_LEASE_TTL", 5));
    let move_mib = knob("BALLAST_BENCH_MOVE_MIB", 1024);

    eprintln!("starting etcd (3 members) and hosts A and B…");
    // Declared first, dropped last: the daemons stop while etcd answers.
    let etcd = Etcd::start();
    let shared = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let target = s3.as_ref().map(|s3| s3_target(s3, shared.path())).unwrap_or_default();
    // A serves the private Docker engine too (when there is one), for
    // the row timed as users meet it: `docker run`.
    let engine = harness::engine();
    let mut a = host("a", &etcd, shared.path(), ttl, &target, engine);
    let b = host("b", &etcd, shared.path(), ttl, &target, None);

    let mut rows = Vec::new();
    if let Some(s3) = &s3 {
        moves(&a, &b, s3, move_mib, &mut rows);
    }
    round_trip(&a, &etcd, rounds, &mut rows);
    if let Some(e) = engine {
        docker_runs(e, &a, &mut rows);
    }
    failover(&mut a, &b, ttl, failovers, &mut rows);
    lookups(&a, &b, volumes, &mut rows);
    println!("\n| measurement | ballast | peer | ratio | target |\n|---|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} | {} |", r.what, r.ballast, r.peer, r.ratio, r.target);
    }
}

/// A private daemon in the cluster of `etcd`, named `bench-NAME`, whose
/// default pool is the shared one under `shared`, with a pool of its own
/// (`local`) and the backup target `target` (config text); with `engine`,
/// that engine's driver `ballast-bench-cluster`.
fn host(
    name: &str,
    etcd: &Etcd,
    shared: &Path,
    ttl: Duration,
    target: &str,
    engine: Option<&'static harness::Engine>,
) -> Daemon {
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
    let config = format!(
        "[[pool]]\nname = \"shared\"\nbackend = \"dir\"\npath = \"{}\"\nscope = \"global\"\n\
         default = true\n\n[[pool]]\nname = \"local\"\nbackend = \"dir\"\n\n{target}\n\
         [cluster]\netcd = [{}]\nnode = \"bench-{name}\"\nlease_ttl = \"{}s\"\n",
        shared.join("pool").display(),
        endpoints.join(", "),
        ttl.as_secs()
    );
    match engine {
        Some(e) => Daemon::for_docker_with("ballast-bench-cluster", e, Some(&config)),
        None => Daemon::private_with(&format!("bench-cluster-{name}"), &config),
    }
}

/// `docker run --rm -v VOL:/data true` with a cluster volume of `a`, a
/// `-o cluster=false` one of the same daemon and pool, and one of
/// Docker's `local` driver, in turn: the Mount+Unmount pair as users
/// meet it, from the command to done.
fn docker_runs(e: &harness::Engine, a: &Daemon, rows: &mut Vec<Row>) {
    let vols = ["rt-run-cluster", "rt-run-single", "rt-run-local"];
    e.ok(&["volume", "create", "--driver", &a.driver, vols[0]]);
    e.ok(&["volume", "create", "--driver", &a.driver, "-o", "cluster=false", vols[1]]);
    e.ok(&["volume", "create", "--driver", "local", vols[2]]);
    eprintln!("docker run ×30 with each…");
    let mut times: [Vec<Duration>; 3] = Default::default();
    for i in 0..30 {
        for k in 0..3 {
            let which = (i + k) % 3;
            let v = format!("{}:/data", vols[which]);
            let t = Instant::now();
            e.ok(&["run", "--rm", "--network", "none", "-v", &v, harness::IMAGE, "true"]);
            times[which].push(t.elapsed());
        }
    }
    e.ok(&["volume", "rm", vols[0], vols[1], vols[2]]);
    let [cluster, single, local] = &times;
    for (peer, theirs) in [("`-o cluster=false`", single), ("Docker's `local` driver", local)] {
        rows.push(Row {
            what: format!(
                "`docker run --rm -v VOL:/data true` with a cluster volume vs {peer} (×30, \
                 alternating)"
            ),
            ballast: p50_p99(cluster),
            peer: p50_p99(theirs),
            ratio: format!("{:.2}", ratio(pct(cluster, 0.5), pct(theirs, 0.5))),
            target: "≤ 1.5".into(),
        });
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a rank within the samples: the saturating cast rounds it"
)]
fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn p50_p99(v: &[Duration]) -> String {
    format!("p50 {}, p99 {}", ms(pct(v, 0.5)), ms(pct(v, 0.99)))
}

fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64()
}

/// A plugin call: the body, or the error ballast answered.
fn call(conn: &mut Conn, method: &str, body: &Value) -> Result<Value, String> {
    let (status, v) = conn.call(method, &body.to_string());
    match v["Err"].as_str() {
        Some(e) if !e.is_empty() => Err(e.to_string()),
        _ if status == 200 => Ok(v),
        _ => Err(format!("status {status}: {v}")),
    }
}

fn ok(conn: &mut Conn, method: &str, body: &Value) -> Value {
    call(conn, method, body).unwrap_or_else(|e| panic!("{method} {body}: {e}"))
}

/// Repeats a call until it succeeds (a daemon still joining the cluster
/// refuses cluster volumes); fails after 90 s.
fn until_ok(conn: &mut Conn, method: &str, body: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match call(conn, method, body) {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{method} {body}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `cond` every 20 ms until it holds; fails after `secs`.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A volume's standing in the cluster as the admin API of `d` shows it.
fn lease_state(d: &Daemon, name: &str) -> String {
    let (status, v) = d.admin("GET", &format!("/v1/volumes/{name}"), Value::Null);
    if status != 200 {
        return String::new();
    }
    v["leaseState"].as_str().unwrap_or_default().to_string()
}

/// Mount+Unmount pairs, as Docker makes them for a container's start and
/// stop, of a cluster volume and a `-o cluster=false` one of the same
/// daemon and pool; and the etcd floor under the difference. Each round
/// runs the three in turn, starting with another each time.
fn round_trip(a: &Daemon, etcd: &Etcd, rounds: usize, rows: &mut Vec<Row>) {
    let mut conn = Conn::new(&a.plugin_socket);
    until_ok(&mut conn, "VolumeDriver.Create", &json!({ "Name": "rt-cluster", "Opts": null }));
    let local = json!({ "Name": "rt-local", "Opts": { "cluster": "false" } });
    ok(&mut conn, "VolumeDriver.Create", &local);
    assert_eq!(lease_state(a, "rt-cluster"), "free");
    assert_eq!(lease_state(a, "rt-local"), "local");
    let mut floor = EtcdFloor::new(&etcd.endpoints());
    let mut pair = |which: usize| {
        let t = Instant::now();
        match which {
            0 | 1 => {
                let name = if which == 0 { "rt-cluster" } else { "rt-local" };
                let body = json!({ "Name": name, "ID": "bench-container" });
                ok(&mut conn, "VolumeDriver.Mount", &body);
                ok(&mut conn, "VolumeDriver.Unmount", &body);
            }
            _ => floor.put_and_delete(),
        }
        t.elapsed()
    };
    eprintln!("Mount+Unmount ×{rounds} of each…");
    for i in 0..20 {
        pair(i % 3);
    }
    let mut times: [Vec<Duration>; 3] = Default::default();
    for i in 0..rounds {
        for k in 0..3 {
            let which = (i + k) % 3;
            times[which].push(pair(which));
        }
    }
    let [cluster, local, etcd] = &times;
    let (c50, l50, e50) = (pct(cluster, 0.5), pct(local, 0.5), pct(etcd, 0.5));
    let (c99, l99) = (pct(cluster, 0.99), pct(local, 0.99));
    rows.push(Row {
        what: format!(
            "Mount+Unmount of a cluster volume vs a `-o cluster=false` one (×{rounds}, alternating)"
        ),
        ballast: format!("median {}, p99 {}", ms(c50), ms(c99)),
        peer: format!("median {}, p99 {} (cluster=false)", ms(l50), ms(l99)),
        ratio: format!("{:.2} (p99 {:.2})", ratio(c50, l50), ratio(c99, l99)),
        target: "≤ 1.5".into(),
    });
    let extra = c50.saturating_sub(l50);
    rows.push(Row {
        what: "what the cluster adds to the pair (medians) vs etcd's own put with a lease + \
               delete (etcd-client, same rounds)"
            .into(),
        ballast: ms(extra),
        peer: format!("median {}, p99 {} (etcd)", ms(e50), ms(pct(etcd, 0.99))),
        ratio: format!("{:.2}", ratio(extra, e50)),
        target: "-".into(),
    });
}

/// The two etcd writes under a cluster volume's Mount+Unmount (Mount's
/// hold: a put tied to the host's lease; the last Unmount's release: a
/// delete), made by the etcd client ballast uses, outside ballast's keys.
struct EtcdFloor {
    runtime: tokio::runtime::Runtime,
    client: etcd_client::Client,
    lease: i64,
}

impl EtcdFloor {
    fn new(endpoints: &[String]) -> EtcdFloor {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (client, lease) = runtime.block_on(async {
            let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
            let lease = client.lease_grant(600, None).await.unwrap().id();
            (client, lease)
        });
        EtcdFloor { runtime, client, lease }
    }

    fn put_and_delete(&mut self) {
        let (client, lease) = (&mut self.client, self.lease);
        self.runtime.block_on(async {
            let put = etcd_client::PutOptions::new().with_lease(lease);
            client.put("/ballast-bench/floor", "x", Some(put)).await.unwrap();
            client.delete("/ballast-bench/floor", None).await.unwrap();
        });
    }
}

/// A holds a volume (mounted) when its daemon is killed; B's Mount, made
/// as soon as the kill returned and repeated until it succeeds, is timed
/// from the kill. A starts again between runs and lets go.
fn failover(a: &mut Daemon, b: &Daemon, ttl: Duration, runs: usize, rows: &mut Vec<Row>) {
    let mut took = Vec::new();
    for run in 0..runs {
        let name = format!("failover-{run}");
        let on_a = json!({ "Name": name, "ID": "container-on-a" });
        let on_b = json!({ "Name": name, "ID": "container-on-b" });
        {
            let mut conn = Conn::new(&a.plugin_socket);
            until_ok(&mut conn, "VolumeDriver.Create", &json!({ "Name": name, "Opts": null }));
            until_ok(&mut conn, "VolumeDriver.Mount", &on_a);
        }
        // B's watch has seen A's holding: B's Mount now has to wait.
        wait_for("B to see A hold the volume", 30, || lease_state(b, &name) == "heldElsewhere");
        a.kill9();
        let killed = Instant::now();
        let mut conn = Conn::new(&b.plugin_socket);
        let at = loop {
            match call(&mut conn, "VolumeDriver.Mount", &on_b) {
                Ok(_) => break killed.elapsed(),
                Err(e) => assert!(killed.elapsed() < Duration::from_secs(120), "{e}"),
            }
        };
        eprintln!("failover {run}: B mounted {at:?} after the kill");
        took.push(at);
        ok(&mut conn, "VolumeDriver.Unmount", &on_b);
        a.start_again();
        // A holds again what it had mounted (B let go), then Docker's
        // Unmount on A lets go: the next run starts from a free cluster.
        wait_for("A to hold its volume again", 90, || lease_state(a, &name) == "held");
        ok(&mut Conn::new(&a.plugin_socket), "VolumeDriver.Unmount", &on_a);
    }
    let goal = ttl + Duration::from_secs(1);
    let all: Vec<String> = took.iter().map(|t| format!("{:.2}", t.as_secs_f64())).collect();
    let worst = took.iter().max().copied().unwrap_or_default();
    rows.push(Row {
        what: format!(
            "failover: B's first Mount after `kill -9` of A holding the volume, from the kill \
             (lease TTL {}s, ×{runs})",
            ttl.as_secs()
        ),
        ballast: format!(
            "median {:.2} s, max {:.2} s ({} s)",
            pct(&took, 0.5).as_secs_f64(),
            worst.as_secs_f64(),
            all.join(", ")
        ),
        peer: format!("{:.1} s (TTL + 1 s)", goal.as_secs_f64()),
        ratio: format!("{:.2}", ratio(worst, goal)),
        target: "≤ TTL + 1 s".into(),
    });
}

/// `n` cluster volumes made on A; once B lists them all, Get and List on
/// B (its mirror of the registry) alternate with the same calls on A.
fn lookups(a: &Daemon, b: &Daemon, n: usize, rows: &mut Vec<Row>) {
    eprintln!("creating {n} cluster volumes on A…");
    let name = |i: usize| format!("vol{i:05}");
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in 0..4 {
            let socket = &a.plugin_socket;
            s.spawn(move || {
                let mut conn = Conn::new(socket);
                for i in (part..n).step_by(4) {
                    ok(&mut conn, "VolumeDriver.Create", &json!({ "Name": name(i), "Opts": null }));
                }
            });
        }
    });
    let created = t.elapsed();
    let listed = |d: &Daemon| d.names().iter().filter(|s| s.starts_with("vol")).count();
    let mut polls = 0;
    wait_for("B to list every volume", 600, || {
        polls += 1;
        if polls % 50 == 0 {
            eprintln!("… B lists {} of {n}", listed(b));
        }
        listed(b) == n
    });
    let mirrored = t.elapsed();
    rows.push(Row {
        what: format!("Create ×{n} cluster volumes on A (4 clients); until B lists them all"),
        ballast: format!(
            "{:.0} /s; B lists all {:.1} s after the first Create",
            n as f64 / created.as_secs_f64(),
            mirrored.as_secs_f64()
        ),
        peer: format!("{:.1} s (A's Creates)", created.as_secs_f64()),
        ratio: format!("{:.2}", ratio(mirrored, created)),
        target: "-".into(),
    });

    let calls = usize::try_from(knob("BALLAST_BENCH_GETS", 2_000)).unwrap();
    let (mut on_a, mut on_b) = (Conn::new(&a.plugin_socket), Conn::new(&b.plugin_socket));
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    let get = |conn: &mut Conn, i: usize| {
        let body = json!({ "Name": name(i * 7919 % n) });
        let t = Instant::now();
        ok(conn, "VolumeDriver.Get", &body);
        t.elapsed()
    };
    for i in 0..calls {
        if i % 2 == 0 {
            from_b.push(get(&mut on_b, i));
            from_a.push(get(&mut on_a, i));
        } else {
            from_a.push(get(&mut on_a, i));
            from_b.push(get(&mut on_b, i));
        }
    }
    rows.push(Row {
        what: format!("Get on B of A's volumes vs Get on A (×{calls}, at {n} volumes)"),
        ballast: p50_p99(&from_b),
        peer: format!("{} (A)", p50_p99(&from_a)),
        ratio: format!("{:.2}", ratio(pct(&from_b, 0.99), pct(&from_a, 0.99))),
        target: "p99 < 1 ms on B".into(),
    });

    let list = |conn: &mut Conn| {
        // Timed to the last byte received; parsing is the client's cost.
        let t = Instant::now();
        let (status, _, body) = conn.request("POST", "/VolumeDriver.List", "");
        let took = t.elapsed();
        assert_eq!(status, 200, "{body}");
        took
    };
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    for i in 0..30 {
        if i % 2 == 0 {
            from_b.push(list(&mut on_b));
            from_a.push(list(&mut on_a));
        } else {
            from_a.push(list(&mut on_a));
            from_b.push(list(&mut on_b));
        }
    }
    rows.push(Row {
        what: format!("List on B vs List on A (×30, at {n} volumes)"),
        ballast: format!("median {}, p99 {}", ms(pct(&from_b, 0.5)), ms(pct(&from_b, 0.99))),
        peer: format!("median {}, p99 {} (A)", ms(pct(&from_a, 0.5)), ms(pct(&from_a, 0.99))),
        ratio: format!("{:.2}", ratio(pct(&from_b, 0.5), pct(&from_a, 0.5))),
        target: "-".into(),
    });
}

/// The S3 target both hosts move volumes through, as config text.
fn s3_target(s3: &S3Server, dir: &Path) -> String {
    s3.bucket("moves");
    let password = dir.join("target-password");
    std::fs::write(&password, "bench moves\n").unwrap();
    format!(
        "[[backup_target]]\nname = \"s3\"\nurl = \"s3://moves/bench\"\nendpoint = \"{}\"\n\
         region = \"us-east-1\"\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
         password_file = \"{}\"\n",
        s3.endpoint,
        password.display()
    )
}

/// The move done by hand with Debian's restic: a new repository in the
/// same S3 server, `restic backup` of `dir` and `restic restore` of that
/// snapshot into a new directory, page cache dropped first. `None`
/// without restic.
fn restic_move(s3: &S3Server, dir: &Path, bytes: u64) -> Option<Duration> {
    if !harness::have("restic") {
        return None;
    }
    s3.bucket("by-hand");
    let work = tempfile::tempdir().unwrap();
    let restic = |args: &[&str]| {
        let out = std::process::Command::new("restic")
            .args(["--no-cache", "--quiet", "-r"])
            .arg(format!("s3:{}/by-hand/repo", s3.endpoint))
            .args(args)
            .env("RESTIC_PASSWORD", "bench by hand")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    restic(&["init"]);
    drop_caches();
    eprintln!("the same move by hand with restic…");
    let t = Instant::now();
    let src = dir.to_str().unwrap();
    restic(&["backup", src]);
    let dest = work.path().join("restored");
    restic(&["restore", "latest", "--target", dest.to_str().unwrap()]);
    let took = t.elapsed();
    assert_eq!(read_all(&dest.join(src.trim_start_matches('/'))), bytes, "restic restored all");
    Some(took)
}

/// Empties the page cache, so that every read below comes from the disk.
fn drop_caches() {
    rustix::fs::sync();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Incompressible bytes (xorshift), `mib` MiB in 16 MiB files under `dir`.
fn fill(dir: &Path, mib: u64) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for f in 0..mib.div_ceil(16) {
        let mut out = std::fs::File::create(dir.join(format!("f{f:03}"))).unwrap();
        for _ in 0..16.min(mib - f * 16) {
            for chunk in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            std::io::Write::write_all(&mut out, &buf).unwrap();
        }
        out.sync_all().unwrap();
    }
}

/// Reads every file under `dir`; the bytes read.
fn read_all(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let mut f = std::fs::File::open(e.unwrap().path()).unwrap();
        n += std::io::copy(&mut f, &mut std::io::sink()).unwrap();
    }
    n
}

/// A Mount of `name` on `d`, repeated until it succeeds (a move longer
/// than a Mount may wait fails it; Docker starts the container again):
/// the mountpoint and the time from the first call.
fn mount_arrived(d: &Daemon, name: &str, id: &str) -> (std::path::PathBuf, Duration) {
    let mut conn = Conn::new(&d.plugin_socket);
    let body = json!({ "Name": name, "ID": id });
    let t = Instant::now();
    loop {
        match call(&mut conn, "VolumeDriver.Mount", &body) {
            Ok(v) => return (v["Mountpoint"].as_str().unwrap().into(), t.elapsed()),
            Err(e) => assert!(t.elapsed() < Duration::from_secs(900), "{e}"),
        }
    }
}

/// A `follow` volume of `mib` MiB moved A → B, then back after 1 %
/// changed on B.
fn moves(a: &Daemon, b: &Daemon, s3: &S3Server, mib: u64, rows: &mut Vec<Row>) {
    eprintln!("writing {mib} MiB into a follow volume on A…");
    let name = "move-bench";
    let opts = json!({ "Name": name, "Opts": { "pool": "local", "follow": "true" } });
    until_ok(&mut Conn::new(&a.plugin_socket), "VolumeDriver.Create", &opts);
    let (mp, _) = mount_arrived(a, name, "writer");
    fill(&mp, mib);
    drop_caches();
    let t = Instant::now();
    let bytes = read_all(&mp);
    let plain = t.elapsed();
    let by_hand = restic_move(s3, &mp, bytes);
    ok(
        &mut Conn::new(&a.plugin_socket),
        "VolumeDriver.Unmount",
        &json!({ "Name": name, "ID": "writer" }),
    );
    wait_for("B to know the volume", 60, || lease_state(b, name) == "free");

    eprintln!("moving it to B…");
    drop_caches();
    let (mp, full) = mount_arrived(b, name, "on-b");
    assert_eq!(read_all(&mp), bytes, "B has every byte");
    // 1 % changed on B: the first 1 % of the files rewritten.
    let changed = (mib / 100).max(1);
    fill(&mp, changed);
    ok(
        &mut Conn::new(&b.plugin_socket),
        "VolumeDriver.Unmount",
        &json!({ "Name": name, "ID": "on-b" }),
    );

    eprintln!("moving it back to A after {changed} MiB changed…");
    drop_caches();
    let (_, back) = mount_arrived(a, name, "on-a");
    ok(
        &mut Conn::new(&a.plugin_socket),
        "VolumeDriver.Unmount",
        &json!({ "Name": name, "ID": "on-a" }),
    );
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    rows.push(Row {
        what: format!(
            "move of a {mib} MiB follow volume A → B through S3 (s3s-fs): B's first Mount call \
             to its Mount that succeeds, vs a plain read of its files on A (cold cache)"
        ),
        ballast: secs(full),
        peer: secs(plain),
        ratio: format!("{:.2}", ratio(full, plain)),
        target: "≤ 1.5".into(),
    });
    rows.push(Row {
        what: "the same move vs doing it by hand with restic: `restic backup` of the files on \
               A, `restic restore` of it on B, same S3 server (cold cache)"
            .into(),
        ballast: secs(full),
        peer: by_hand.map_or("restic not installed".into(), secs),
        ratio: by_hand.map_or("-".into(), |r| format!("{:.2}", ratio(full, r))),
        target: "≤ 1.5".into(),
    });
    rows.push(Row {
        what: format!("the move back B → A after {changed} MiB changed, vs the first move"),
        ballast: secs(back),
        peer: secs(full),
        ratio: format!("{:.2}", ratio(back, full)),
        target: "≤ 0.2".into(),
    });
}
