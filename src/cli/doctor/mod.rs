//! `ballast doctor`: what this host needs for the daemon and its pools,
//! checked, with what to do about each problem. The host's checks
//! (`host.rs`: tools, kernel filesystems, loop devices, Docker's engine,
//! socket directories) need no daemon; then it asks the admin API what
//! the daemon serves (pools, driver name), and checks where Docker sends
//! that driver name (`plugin.rs`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;

use super::Client;

mod host;
mod plugin;

/// One finding.
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failed: bool,
}

impl Report {
    fn say(&mut self, level: Level, what: impl AsRef<str>, fix: Option<&str>) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                self.failed = true;
                "FAIL"
            }
        };
        let mut line = format!("{tag}  {}", what.as_ref());
        if let Some(fix) = fix {
            line.push_str(&format!("\n      → {fix}"));
        }
        self.lines.push(line);
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn kernel_has(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(fs)))
}

/// "1 volume", "2 volumes".
fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// Runs the checks; fails (exit status 1) when any check failed. The
/// host's checks run whether or not the daemon answers; a daemon that
/// does not answer is one failure among the findings.
pub async fn run(client: &Client, admin: &str) -> Result<(), String> {
    let mut r = Report::default();
    host::check(&mut r, admin);
    check_socket(&mut r, admin);
    let health =
        tokio::time::timeout(Duration::from_secs(10), client.call(Method::GET, "/healthz", None))
            .await
            .unwrap_or_else(|_| Err(format!("the daemon at {admin} did not answer within 10 s")));
    // Without the daemon, the name it would serve by default.
    let mut driver = "ballast".to_string();
    let mut daemon = None;
    let answered = health.is_ok();
    match health {
        Ok(h) => {
            let n = h["volumes"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            r.say(
                Level::Ok,
                format!("the daemon answers at {admin} ({})", plural(n, "volume")),
                None,
            );
            let schema = client.call(Method::GET, "/v1/schemas/volume", None).await?;
            if let Some(d) = schema["resourceFields"]["driver"]["default"].as_str() {
                driver = d.to_string();
            }
            let pools = client.list("/v1/storagepools").await?;
            for p in pools["data"].as_array().into_iter().flatten() {
                check_pool(&mut r, p);
            }
            if let Some(path) = admin.strip_prefix("unix://") {
                daemon = plugin::serving_pid(Path::new(path)).await.ok();
            }
        }
        Err(e) => r.say(
            Level::Fail,
            format!("the daemon does not answer: {e}"),
            Some("the checks of its pools need it; the host's checks above do not"),
        ),
    }
    plugin::check(&mut r, &driver, daemon).await;
    if answered && have("docker") {
        plugin::check_docker(&mut r, &driver).await;
    }
    for line in &r.lines {
        println!("{line}");
    }
    if r.failed { Err("some checks failed; see above".into()) } else { Ok(()) }
}

fn check_socket(r: &mut Report, admin: &str) {
    let Some(path) = admin.strip_prefix("unix://") else { return };
    match std::fs::metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            r.say(Level::Fail, format!("{path} is not a socket"), Some("remove it and restart the daemon"))
        }
        Ok(m) if m.mode() & 0o007 != 0 => r.say(
            Level::Fail,
            format!("the admin socket {path} is open to every user (mode {:o})", m.mode() & 0o777),
            Some("anyone could remove volumes: restart the daemon (it sets 0600, or 0660 with [admin] socket_group)"),
        ),
        Ok(m) => r.say(Level::Ok, format!("admin socket {path}, mode {:o}", m.mode() & 0o777), None),
        Err(_) => {}
    }
}

fn check_pool(r: &mut Report, p: &Value) {
    let name = p["name"].as_str().unwrap_or("?");
    let backend = p["backend"].as_str().unwrap_or("?");
    let path = p["path"].as_str().unwrap_or("");
    if p["state"] != "active" {
        r.say(
            Level::Fail,
            format!("pool {name} ({backend}) is unavailable: its path {path} cannot be used"),
            Some("mount the pool's disk (or fix the path in the config) and restart the daemon"),
        );
        return;
    }
    let (cap, free) =
        (p["capacityBytes"].as_u64().unwrap_or(0), p["freeBytes"].as_u64().unwrap_or(0));
    if cap > 0 && free * 100 < cap * 10 {
        r.say(
            Level::Warn,
            format!("pool {name}: {}% free", free * 100 / cap),
            Some("below 10% the daemon purges the oldest trash first; free space or add a pool"),
        );
    }
    match backend {
        "btrfs" => {
            let tool = have("btrfs");
            if !kernel_has("btrfs") {
                r.say(
                    Level::Fail,
                    format!("pool {name}: the kernel has no btrfs"),
                    Some("modprobe btrfs"),
                );
            } else if !tool {
                r.say(
                    Level::Warn,
                    format!("pool {name}: the btrfs tool is missing"),
                    Some("apt-get install btrfs-progs (to inspect quotas and subvolumes by hand)"),
                );
            } else {
                let quota = Command::new("btrfs").args(["qgroup", "show", path]).output();
                if quota.is_ok_and(|o| o.status.success()) {
                    r.say(
                        Level::Ok,
                        format!("pool {name}: btrfs with quotas (sizes are enforced)"),
                        None,
                    );
                } else {
                    r.say(
                        Level::Warn,
                        format!("pool {name}: btrfs quotas are off, so `size` cannot be enforced"),
                        Some(&format!("btrfs quota enable {path}")),
                    );
                }
            }
        }
        "loop" => {
            if Path::new("/dev/loop-control").exists() {
                r.say(Level::Ok, format!("pool {name}: /dev/loop-control is there"), None);
            } else {
                r.say(
                    Level::Fail,
                    format!("pool {name}: no /dev/loop-control"),
                    Some("modprobe loop (in a container: give it /dev/loop-control and the loop devices)"),
                );
            }
            for (tool, fs, pkg) in
                [("mkfs.ext4", "ext4", "e2fsprogs"), ("mkfs.xfs", "xfs", "xfsprogs")]
            {
                if !have(tool) {
                    r.say(
                        Level::Warn,
                        format!(
                            "pool {name}: {tool} is missing: volumes with fs={fs} cannot be made"
                        ),
                        Some(&format!("apt-get install {pkg}")),
                    );
                } else if !kernel_has(fs) {
                    r.say(
                        Level::Warn,
                        format!("pool {name}: the kernel has no {fs}"),
                        Some(&format!("modprobe {fs}")),
                    );
                } else {
                    r.say(Level::Ok, format!("pool {name}: {tool} and the kernel's {fs}"), None);
                }
            }
        }
        _ => r.say(Level::Ok, format!("pool {name} ({backend}) at {path}"), None),
    }
    // btrfs pools snapshot subvolumes; the others copy files or images,
    // which costs nothing only where the filesystem shares extents.
    // (A daemon older than the field says nothing either way.)
    if backend != "btrfs" && p.get("copiesShareData").is_some() {
        if p["copiesShareData"] == true {
            r.say(
                Level::Ok,
                format!("pool {name}: snapshots and clones share data (reflinks)"),
                None,
            );
        } else {
            r.say(
                Level::Warn,
                format!(
                    "pool {name}: the filesystem at {path} cannot share data between files \
                     (no reflinks), so snapshots and clones copy every byte"
                ),
                Some("for fast snapshots put the pool on xfs (mkfs.xfs makes reflinks by default) or use a btrfs pool"),
            );
        }
    }
}

/// The command's output, or `None` when it runs for more than `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Option<std::process::Output> {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.ok(),
        Err(_) => {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(i32::try_from(id).ok()?)?,
                rustix::process::Signal::KILL,
            );
            None
        }
    }
}
