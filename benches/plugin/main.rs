//! `cargo bench --bench plugin`: ballast next to its peers, in one run,
//! printed as a table of ratios.
//!
//! - Docker CLI round trips, alternating ballast, a null plugin (the same
//!   HTTP stack answering from memory: Docker's own cost of any plugin)
//!   and Docker's `local` driver: `docker volume create` + `rm` ×100,
//!   `docker run --rm -v` ×30.
//! - The plugin socket alone at 10,000 volumes: Get throughput and p99,
//!   Mount/Unmount pairs, List.
//!
//! Needs root; the Docker part needs a Docker engine (started privately,
//! as in the tests) and is skipped without one.

#[path = "../../tests/e2e/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::time::{Duration, Instant};

mod null_plugin;

use harness::{Conn, Daemon, IMAGE};
use null_plugin::NullPlugin;
use serde_json::json;

const VOLUMES: usize = 10_000;

struct Row {
    what: String,
    ballast: String,
    peer: String,
    ratio: String,
    target: &'static str,
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root (it starts ballast and dockerd)");
        return;
    }
    let mut rows = Vec::new();
    socket_bench(&mut rows);
    docker_bench(&mut rows);
    println!("\n| measurement | ballast | peer | ratio | target |\n|---|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} | {} |", r.what, r.ballast, r.peer, r.ratio, r.target);
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a rank within the samples: the saturating cast rounds it"
)]
fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `f` on `threads` threads, each with its own keep-alive connection,
/// for `secs`; returns every operation's latency and the wall time.
fn load(
    socket: &std::path::Path,
    threads: usize,
    secs: f64,
    f: impl Fn(&mut Conn, usize, u64) + Sync,
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let lat = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || {
                    let mut conn = Conn::new(socket);
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < until {
                        let t0 = Instant::now();
                        f(&mut conn, t, i);
                        lat.push(t0.elapsed());
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    (lat, start.elapsed())
}

fn ok(conn: &mut Conn, method: &str, body: serde_json::Value) {
    let (status, v) = conn.call(method, &body.to_string());
    assert_eq!(status, 200, "{method}: {v}");
}

fn socket_bench(rows: &mut Vec<Row>) {
    let d = Daemon::private("bench-socket");
    let socket = d.plugin_socket.clone();
    eprintln!("creating {VOLUMES} volumes…");
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in 0..4 {
            let socket = &socket;
            s.spawn(move || {
                let mut conn = Conn::new(socket);
                for i in (part..VOLUMES).step_by(4) {
                    ok(
                        &mut conn,
                        "VolumeDriver.Create",
                        json!({ "Name": format!("vol{i:05}"), "Opts": null }),
                    );
                }
            });
        }
    });
    let created = t.elapsed();
    rows.push(Row {
        what: format!("Create ×{VOLUMES} over the socket (4 clients)"),
        ballast: format!("{:.0} /s", VOLUMES as f64 / created.as_secs_f64()),
        peer: "-".into(),
        ratio: "-".into(),
        target: "-",
    });

    let name = |t: usize, i: u64| {
        format!("vol{:05}", (usize::try_from(i).unwrap() * 7919 + t * 4999) % VOLUMES)
    };
    let (lat, wall) =
        load(&socket, 2, 3.0, |c, t, i| ok(c, "VolumeDriver.Get", json!({ "Name": name(t, i) })));
    rows.push(Row {
        what: format!("Get at {VOLUMES} volumes (2 clients)"),
        ballast: format!(
            "{:.0} req/s, p99 {}",
            lat.len() as f64 / wall.as_secs_f64(),
            ms(pct(lat, 0.99))
        ),
        peer: "-".into(),
        ratio: "-".into(),
        target: "≥ 20000 req/s, p99 < 2 ms",
    });

    let (lat, wall) = load(&socket, 2, 3.0, |c, t, i| {
        let body = json!({ "Name": name(t, i), "ID": format!("bench{t}") });
        ok(c, "VolumeDriver.Mount", body.clone());
        ok(c, "VolumeDriver.Unmount", body);
    });
    rows.push(Row {
        what: "Mount+Unmount pair (2 clients; counts survive a daemon crash)".into(),
        ballast: format!(
            "{:.0} pairs/s, p99 {}",
            lat.len() as f64 / wall.as_secs_f64(),
            ms(pct(lat, 0.99))
        ),
        peer: "-".into(),
        ratio: "-".into(),
        target: "-",
    });

    let mut conn = Conn::new(&socket);
    let lat: Vec<Duration> = (0..30)
        .map(|_| {
            // Timed to the last byte received; parsing is the client's cost.
            let t0 = Instant::now();
            let (status, _, body) = conn.request("POST", "/VolumeDriver.List", "");
            let took = t0.elapsed();
            assert_eq!(status, 200);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["Volumes"].as_array().unwrap().len(), VOLUMES);
            took
        })
        .collect();
    rows.push(Row {
        what: format!("List of {VOLUMES} volumes"),
        ballast: format!("median {}, p99 {}", ms(pct(lat.clone(), 0.5)), ms(pct(lat, 0.99))),
        peer: "-".into(),
        ratio: "-".into(),
        target: "< 20 ms",
    });
}

fn docker_bench(rows: &mut Vec<Row>) {
    let Some(e) = harness::engine() else {
        eprintln!("no Docker engine: the Docker comparison is skipped");
        return;
    };
    let d = Daemon::for_docker("ballast-bench", e);
    let null = NullPlugin::start("ballast-bench-null");
    let timed = |args: &[&str]| {
        let t = Instant::now();
        e.ok(args);
        t.elapsed()
    };
    // Each round runs the three drivers in turn, starting with another
    // each time, so that a busy moment of the machine falls on all alike.
    let drivers = [d.driver.as_str(), null.driver.as_str(), "local"];
    let mut totals = [Duration::ZERO; 3];
    for i in 0..100 {
        for k in 0..3 {
            let which = (i + k) % 3;
            let name = format!("bench-cr-{i}-{which}");
            totals[which] += timed(&["volume", "create", "--driver", drivers[which], &name])
                + timed(&["volume", "rm", &name]);
        }
    }
    rows.extend(ratio_rows("docker volume create + rm ×100", totals));

    let vols = ["bench-run-b", "bench-run-n", "bench-run-l"];
    for (vol, driver) in vols.iter().zip(drivers) {
        e.ok(&["volume", "create", "--driver", driver, vol]);
    }
    let mut totals = [Duration::ZERO; 3];
    for i in 0..30 {
        for k in 0..3 {
            let which = (i + k) % 3;
            let v = format!("{}:/data", vols[which]);
            totals[which] += timed(&["run", "--rm", "--network", "none", "-v", &v, IMAGE, "true"]);
        }
    }
    rows.extend(ratio_rows("docker run --rm -v vol:/data true ×30", totals));
    e.ok(&["volume", "rm", vols[0], vols[1], vols[2]]);
}

/// Rows of ballast's time against the null plugin's (its own cost) and
/// the `local` driver's (what users compare with).
fn ratio_rows(what: &str, [ours, null, local]: [Duration; 3]) -> [Row; 2] {
    [
        ratio_row(&format!("{what} vs a null plugin"), ours, null, "null plugin", "≤ 1.03"),
        ratio_row(&format!("{what} vs local"), ours, local, "local", "≤ 1.05"),
    ]
}

fn ratio_row(
    what: &str,
    ours: Duration,
    theirs: Duration,
    peer: &str,
    target: &'static str,
) -> Row {
    Row {
        what: what.into(),
        ballast: format!("{:.2} s", ours.as_secs_f64()),
        peer: format!("{:.2} s ({peer})", theirs.as_secs_f64()),
        ratio: format!("{:.3}", ours.as_secs_f64() / theirs.as_secs_f64()),
        target,
    }
}
