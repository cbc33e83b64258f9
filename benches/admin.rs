//! `cargo bench --bench admin`: snapshot and revert of a dir volume next
//! to `cp -a --reflink=auto` of the same tree, alternating in one run; and
//! the admin API's volume list at 10,000 volumes: a filtered, sorted page
//! of 100 and the largest page, next to the GET of one volume.
//!
//! Needs root (it starts the daemon). Sizes can be scaled down with
//! `BALLAST_BENCH_FILES` (default 10,000 files of 100 KiB: ~1 GiB).

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Conn, Daemon};
use serde_json::{Value, json};

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root (it starts ballast)");
        return;
    }
    let files: usize =
        std::env::var("BALLAST_BENCH_FILES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let mut rows = Vec::new();
    snapshot_bench(files, &mut rows);
    list_bench(&mut rows);
    println!("\n| measurement | ballast | peer | ratio | target |\n|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn sh(cmd: &str) {
    let ok = Command::new("sh").arg("-c").arg(cmd).status().unwrap().success();
    assert!(ok, "{cmd}");
}

fn snapshot_bench(files: usize, rows: &mut Vec<String>) {
    let d = Daemon::private("bench-snapshot");
    d.admin_ok("POST", "/v1/volumes", json!({ "name": "big" }), 201);
    let mp = d.get("big")["Mountpoint"].as_str().unwrap().to_string();
    eprintln!("writing {files} files of 100 KiB…");
    let chunk = vec![0x5au8; 100 << 10];
    for i in 0..files {
        let dir = format!("{mp}/d{:03}", i / 100);
        if i % 100 == 0 {
            std::fs::create_dir(&dir).unwrap();
        }
        std::fs::write(format!("{dir}/f{i}"), &chunk).unwrap();
    }
    sh("sync");
    let scratch = tempfile::tempdir_in(d.state_dir()).unwrap(); // same filesystem as the pool
    let (mut cp, mut cp_sync, mut snap, mut revert) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let rounds: u32 = 3;
    for round in 0..rounds {
        let dst = scratch.path().join(format!("copy{round}"));
        let t = Instant::now();
        sh(&format!("cp -a --reflink=auto {mp} {}", dst.display()));
        let plain = t.elapsed();
        sh(&format!("sync -f {}", dst.display()));
        cp += plain;
        cp_sync += t.elapsed();
        sh(&format!("rm -rf {}", dst.display()));

        let t = Instant::now();
        let s = d.admin_ok("POST", "/v1/volumes/big?action=snapshot", Value::Null, 202);
        let id = s["id"].as_str().unwrap().to_string();
        let s = d.settle(&format!("/v1/snapshots/{id}"));
        snap += t.elapsed();
        assert_eq!(s["state"], "created", "{s}");

        let t = Instant::now();
        d.admin_ok(
            "POST",
            "/v1/volumes/big?action=reverttosnapshot",
            json!({ "snapshotId": id }),
            202,
        );
        let v = d.settle("/v1/volumes/big");
        revert += t.elapsed();
        assert_eq!(v["transitioning"], "no", "{v}");
        d.admin_ok("DELETE", &format!("/v1/snapshots/{id}"), Value::Null, 200);
        sh("sync");
    }
    let n = rounds;
    let what = format!("{files} files, {} MiB", files * 100 / 1024);
    for (label, ours) in [("snapshot", snap / n), ("revert", revert / n)] {
        rows.push(format!(
            "| {label} of a dir volume ({what}) | {} | {} (cp -a --reflink=auto) | {:.2} | ≤ 1.10 |",
            secs(ours),
            secs(cp / n),
            ours.as_secs_f64() / (cp / n).as_secs_f64()
        ));
        rows.push(format!(
            "| {label}, against cp followed by sync (ballast syncs before it answers) | {} | {} | {:.2} | - |",
            secs(ours),
            secs(cp_sync / n),
            ours.as_secs_f64() / (cp_sync / n).as_secs_f64()
        ));
    }
}

fn list_bench(rows: &mut Vec<String>) {
    let d = Daemon::private("bench-list");
    let n = 10_000;
    eprintln!("creating {n} volumes…");
    std::thread::scope(|s| {
        for part in 0..4 {
            let socket = &d.plugin_socket;
            s.spawn(move || {
                let mut conn = Conn::new(socket);
                for i in (part..n).step_by(4) {
                    let (status, v) = conn.call(
                        "VolumeDriver.Create",
                        &json!({ "Name": format!("vol{i:05}") }).to_string(),
                    );
                    assert_eq!(status, 200, "{v}");
                }
            });
        }
    });
    let mut conn = Conn::new(&d.admin_socket);
    let mut timed = |path: &str, check: &dyn Fn(&Value)| -> (Duration, Duration) {
        let mut lat: Vec<Duration> = (0..30)
            .map(|_| {
                let t = Instant::now();
                let (status, _, body) = conn.request("GET", path, "");
                let took = t.elapsed();
                assert_eq!(status, 200, "{body}");
                check(&serde_json::from_str(&body).unwrap());
                took
            })
            .collect();
        lat.sort();
        (lat[lat.len() / 2], lat[lat.len() - 1])
    };
    // The peer: one volume by name, the cheapest thing the endpoint does.
    let (one, _) = timed("/v1/volumes/vol05000", &|v| assert_eq!(v["name"], "vol05000"));
    let page = "/v1/volumes?state=inactive&name_prefix=vol0&sort=createdTS&order=desc&limit=100";
    let (median, max) = timed(page, &|c| {
        assert_eq!(c["data"].as_array().unwrap().len(), 100);
        assert_eq!(c["pagination"]["total"], 10_000);
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    rows.push(format!(
        "| filtered, sorted page of 100 at {n} volumes (`{page}`) | median {:.1} ms, max {:.1} ms \
         | {:.2} ms (GET of one volume) | {:.0} | < 10 ms |",
        ms(median),
        ms(max),
        ms(one),
        median.as_secs_f64() / one.as_secs_f64()
    ));
    let (median, max) = timed("/v1/volumes?limit=1000", &|c| {
        assert_eq!(c["data"].as_array().unwrap().len(), 1000);
    });
    rows.push(format!(
        "| a page of 1,000 (the most a page holds) at {n} volumes | median {:.1} ms, max {:.1} ms \
         | {:.2} ms | {:.0} | < 50 ms |",
        ms(median),
        ms(max),
        ms(one),
        median.as_secs_f64() / one.as_secs_f64()
    ));
}
