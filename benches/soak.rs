//! `cargo bench --bench soak`: the admin API under 60 s of concurrent
//! requests (lists, gets, creates and removes, updates, and junk: invented
//! methods, unknown paths, bad bodies) next to the plugin socket's own
//! traffic; memory before and after, and latencies. Needs root.
//! `SOAK_SECONDS` shortens it.

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::time::{Duration, Instant};

use harness::{Conn, Daemon};
use serde_json::json;

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root");
        return;
    }
    let secs: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let d = Daemon::private("bench-soak");
    let mut conn = Conn::new(&d.plugin_socket);
    for i in 0..1_000 {
        conn.call("VolumeDriver.Create", &json!({ "Name": format!("base{i}") }).to_string());
    }
    // Warm up: every kind of request once, so that what stays resident
    // afterwards is not first-use allocation.
    let mut i = 0;
    let warm = Instant::now() + Duration::from_secs(5);
    let mut admin = Conn::new(&d.admin_socket);
    while Instant::now() < warm {
        one(&mut admin, 0, i);
        i += 1;
    }
    let before = d.rss_kib();
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut samples = Vec::new();
    let lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let sock = if t == 3 { d.plugin_socket.clone() } else { d.admin_socket.clone() };
                s.spawn(move || {
                    let mut c = Conn::new(&sock);
                    let mut lat = Vec::new();
                    let mut i = 0;
                    while Instant::now() < until {
                        let t0 = Instant::now();
                        if t == 3 {
                            c.call(
                                "VolumeDriver.Get",
                                &json!({ "Name": format!("base{}", i % 1000) }).to_string(),
                            );
                        } else {
                            one(&mut c, t, i);
                        }
                        lat.push(t0.elapsed());
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        // Resident memory every tenth of the run: a leak climbs to the
        // end, warm-up growth levels off.
        while Instant::now() < until {
            std::thread::sleep(Duration::from_secs(secs.max(10) / 10));
            samples.push(d.rss_kib() / 1024);
        }
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = started.elapsed();
    let after = d.rss_kib();
    let mut sorted = lat.clone();
    sorted.sort();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank within the samples: the saturating cast rounds it"
    )]
    let p = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    println!("\n| measurement | value | target |\n|---|---|---|");
    println!(
        "| requests in {secs} s (3 admin clients, 1 plugin client) | {} ({:.0}/s) | - |",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "| latency p50 / p99 | {:.2} ms / {:.2} ms | p99 < 50 ms |",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3
    );
    println!("| RSS before / after | {} KiB / {} KiB | - |", before, after);
    println!("| RSS after ÷ before | {:.2} | ≤ 1.10 (flat) |", after as f64 / before as f64);
    let series: Vec<String> = samples.iter().map(|m| m.to_string()).collect();
    println!("| RSS every {} s (MiB) | {} | levels off |", secs.max(10) / 10, series.join(" "));
}

/// One admin request of a mix chosen by `i`; each client `t` creates and
/// removes its own volumes.
fn one(c: &mut Conn, t: usize, i: usize) {
    let name = format!("soak{t}-{i}");
    match i % 8 {
        0 => drop(c.request("GET", "/v1/volumes?limit=100", "")),
        1 => drop(c.request("GET", &format!("/v1/volumes/base{}", i % 1000), "")),
        2 => drop(c.request("POST", "/v1/volumes", &json!({ "name": name }).to_string())),
        3 => drop(c.request("POST", &format!("/v1/volumes/soak{t}-{}?action=remove", i - 1), "{}")),
        4 => drop(c.request(
            "PUT",
            &format!("/v1/volumes/base{}", i % 1000),
            &json!({ "description": format!("d{i}") }).to_string(),
        )),
        5 => drop(c.request(&format!("X{i}"), "/v1/volumes", "")),
        6 => drop(c.request("GET", &format!("/v1/nothing/{i}"), "")),
        _ => drop(c.request("POST", "/v1/volumes", "{not json")),
    }
}
