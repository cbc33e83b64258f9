//! `cargo bench --bench pools`: how snapshot and clone times grow with
//! the data on btrfs and on a loop pool over xfs (reflinks), and write
//! throughput inside a loop volume next to the same `dd` on the host
//! filesystem. Backends are driven directly, so the times are the storage
//! work alone. Needs root, btrfs-progs and xfsprogs.

#[path = "../tests/e2e/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use ballast::pool::FsKind;
use ballast::pool::{Backend, BtrfsBackend, LoopBackend, Spec};
use harness::ScratchFs;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("the benchmark needs root (it mounts filesystems)");
        return;
    }
    let mut rows = Vec::new();
    if let Some(fs) = ScratchFs::btrfs(4096) {
        std::fs::create_dir(fs.mnt.join("pool")).unwrap();
        let b = BtrfsBackend::open(&fs.mnt.join("pool")).unwrap();
        compare(&mut rows, "btrfs", &b, |key| b.mountpoint(key), "≤ 1.5 and < 100 ms");
    }
    if let Some(fs) = ScratchFs::xfs(4096) {
        let b = LoopBackend::open(&fs.mnt.join("pool"), FsKind::Ext4).unwrap();
        compare(&mut rows, "loop over xfs", &b, |key| b.activate(key).unwrap(), "≤ 2");
        for key in ["big", "small"] {
            b.deactivate(key).unwrap();
        }
    }
    // Throughput on the machine's own disk, where a loop pool would live.
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let b = LoopBackend::open(&host.path().join("pool"), FsKind::Ext4).unwrap();
    throughput(&mut rows, &b, host.path());
    println!(
        "\n| measurement | 1 GiB volume | 1 MiB volume | ratio | target |\n|---|---|---|---|---|"
    );
    for r in rows {
        println!("{r}");
    }
}

fn fill(path: &std::path::Path, bytes: u64) {
    let ok = Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "status=none", "conv=fsync"])
        .arg(format!("of={}", path.join("data").display()))
        .arg(format!("count={}", bytes / MIB))
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn best_of(n: usize, mut f: impl FnMut(usize) -> Duration) -> Duration {
    (0..n).map(&mut f).min().unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn compare(
    rows: &mut Vec<String>,
    name: &str,
    b: &dyn Backend,
    mountpoint: impl Fn(&str) -> std::path::PathBuf,
    target: &str,
) {
    for (key, size) in [("big", GIB), ("small", MIB)] {
        b.create(key, &Spec { size: Some(GIB + 256 * MIB), ..Spec::default() }).unwrap();
        fill(&mountpoint(key), size);
    }
    let snap = |key: &'static str, offset: usize| {
        best_of(3, |i| {
            let s = format!("s{key}{}", i + offset);
            let t = Instant::now();
            b.snapshot(key, &s, &mut |_| {}).unwrap();
            t.elapsed()
        })
    };
    let (big, small) = (snap("big", 0), snap("small", 0));
    rows.push(format!(
        "| {name}: snapshot | {} | {} | {:.2} | {target} |",
        ms(big),
        ms(small),
        ratio(big, small)
    ));
    let clone = |key: &'static str| {
        best_of(3, |i| {
            let dst = format!("c{key}{i}");
            b.create(&dst, &Spec { size: Some(GIB + 256 * MIB), ..Spec::default() }).unwrap();
            let t = Instant::now();
            b.copy_snapshot(&format!("s{key}0"), &dst, &mut |_| {}).unwrap();
            t.elapsed()
        })
    };
    let (big, small) = (clone("big"), clone("small"));
    rows.push(format!(
        "| {name}: clone from snapshot | {} | {} | {:.2} | {target} |",
        ms(big),
        ms(small),
        ratio(big, small)
    ));
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// 512 MiB written with `dd … conv=fsync` inside a loop volume and on the
/// host filesystem that holds its image, alternating, best of three each.
fn throughput(rows: &mut Vec<String>, b: &LoopBackend, host: &std::path::Path) {
    b.create("speed", &Spec { size: Some(GIB), ..Spec::default() }).unwrap();
    let inside = b.activate("speed").unwrap();
    let dd = |dir: &std::path::Path| {
        let t = Instant::now();
        let ok = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "count=512", "conv=fsync", "status=none"])
            .arg(format!("of={}", dir.join("dd.out").display()))
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let took = t.elapsed();
        std::fs::remove_file(dir.join("dd.out")).unwrap();
        took
    };
    let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        ours = ours.min(dd(&inside));
        theirs = theirs.min(dd(host));
    }
    let mbps = |d: Duration| 512.0 / d.as_secs_f64();
    rows.push(format!(
        "| write 512 MiB (dd conv=fsync): loop volume vs host fs | {:.0} MB/s | {:.0} MB/s (host) | {:.2} | ≥ 0.9 |",
        mbps(ours),
        mbps(theirs),
        mbps(ours) / mbps(theirs)
    ));
    b.deactivate("speed").unwrap();
}
