//! Load through the real Docker engine: many containers at once on one
//! volume and on many volumes; afterwards every count is exact.

use std::time::Instant;

use serde_json::json;

use crate::harness::{Daemon, Engine, engine};

/// Runs `jobs` on `threads` threads, each `docker run --rm` of `script`
/// with the volume the job names at /data.
fn run_all(e: &Engine, threads: usize, jobs: Vec<(String, String)>) {
    let jobs = std::sync::Mutex::new(jobs);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some((vol, script)) = jobs.lock().unwrap().pop() else { return };
                    crate::docker::run(e, &vol, &script);
                }
            });
        }
    });
}

#[test]
fn fifty_containers_at_once_on_one_volume() {
    let Some(e) = engine() else { return };
    let d = Daemon::for_docker("ballast-e2e-load-one", e);
    e.ok(&["volume", "create", "--driver", &d.driver, "load-shared"]);
    let t = Instant::now();
    let jobs =
        (0..50).map(|i| ("load-shared".to_string(), format!("echo {i} >> /data/log"))).collect();
    run_all(e, 10, jobs);
    eprintln!("load: 50 containers on one volume in {:.1?}", t.elapsed());
    let v = d.get("load-shared");
    assert_eq!(v["Status"]["mounts"], 0, "every mount released: {v}");
    assert_eq!(v["Status"]["state"], "inactive", "{v}");
    let log =
        std::fs::read_to_string(format!("{}/log", v["Mountpoint"].as_str().unwrap())).unwrap();
    let mut lines: Vec<u32> = log.lines().map(|l| l.parse().unwrap()).collect();
    lines.sort();
    assert_eq!(lines, (0..50).collect::<Vec<_>>(), "every container wrote once");
    e.ok(&["volume", "rm", "load-shared"]);
}

#[test]
fn two_hundred_containers_on_two_hundred_volumes() {
    let Some(e) = engine() else { return };
    let d = Daemon::for_docker("ballast-e2e-load-many", e);
    let names: Vec<String> = (0..200).map(|i| format!("load-many-{i}")).collect();
    for name in &names {
        e.ok(&["volume", "create", "--driver", &d.driver, name]);
    }
    let t = Instant::now();
    let jobs = names.iter().map(|n| (n.clone(), format!("echo {n} > /data/who"))).collect();
    run_all(e, 10, jobs);
    eprintln!("load: 200 containers on 200 volumes in {:.1?}", t.elapsed());
    let listed = d.names();
    assert_eq!(listed.len(), 200);
    for name in &names {
        let v =
            d.call_ok("VolumeDriver.Get", &json!({ "Name": name }).to_string())["Volume"].take();
        assert_eq!(v["Status"]["mounts"], 0, "{v}");
        let who = std::fs::read_to_string(format!("{}/who", v["Mountpoint"].as_str().unwrap()));
        assert_eq!(who.unwrap().trim(), name);
    }
    let mut rm = vec!["volume", "rm"];
    rm.extend(names.iter().map(String::as_str));
    e.ok(&rm);
    assert!(d.names().is_empty());
}
