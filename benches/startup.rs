//! `cargo bench --bench startup`: how long `ballast serve` takes to open
//! its sockets with 10,000 and 50,000 volumes (and their directories) in
//! the store, and whether that grows linearly. Needs root.

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::time::{Duration, Instant};

use harness::Daemon;

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root");
        return;
    }
    let mut rows = Vec::new();
    for n in [10_000usize, 50_000] {
        let mut d = Daemon::private("bench-startup");
        d.terminate();
        seed(&d, n);
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            d.start_again();
            runs.push(t.elapsed());
            let listed = d.names().len();
            assert_eq!(listed, n, "every volume is listed after the start");
            d.terminate();
        }
        runs.sort();
        rows.push((n, runs[1]));
    }
    let per = |(n, t): (usize, Duration)| t.as_secs_f64() / n as f64;
    println!("\n| volumes | start-up (median of 3) | per volume | target |\n|---|---|---|---|");
    for &(n, t) in &rows {
        let target = if n == 10_000 { "≤ 1 s" } else { "linear" };
        println!(
            "| {n} | {:.0} ms | {:.1} µs | {target} |",
            t.as_secs_f64() * 1e3,
            per((n, t)) * 1e6
        );
    }
    println!(
        "\ngrowth from 10,000 to 50,000 volumes: ×{:.2} per volume (1.0 = linear)",
        per(rows[1]) / per(rows[0])
    );
}

/// Writes `n` inactive volumes straight into a stopped daemon's store,
/// each with its directory, as a long-lived host would have them.
fn seed(d: &Daemon, n: usize) {
    let state = d.state_dir();
    let mut db = rusqlite::Connection::open(state.join("ballast.db")).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO volumes (name, pool, state, created_ms) VALUES (?1, 'default', 'inactive', 0)",
            )
            .unwrap();
        for i in 0..n {
            insert.execute([format!("vol{i}")]).unwrap();
        }
    }
    tx.commit().unwrap();
    let mut ids = db.prepare("SELECT id FROM volumes").unwrap();
    let volumes = state.join("pools/default/volumes");
    for id in ids.query_map([], |r| r.get::<_, i64>(0)).unwrap() {
        std::fs::create_dir(volumes.join(format!("v{}", id.unwrap()))).unwrap();
    }
}
