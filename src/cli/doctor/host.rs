//! The checks that need no daemon: what this host offers pools (tools,
//! kernel filesystems, loop devices), whether Docker's engine answers,
//! and the directories the sockets live in. They run first, so that a
//! host where the daemon does not start yet still learns what it lacks.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{Level, Report, have, kernel_has, run_bounded};

/// The tools pools use, with what is lost without each and its package.
const TOOLS: &[(&str, &str, &str)] = &[
    ("mkfs.ext4", "loop pools cannot make ext4 volumes", "e2fsprogs"),
    ("mkfs.xfs", "loop pools cannot make xfs volumes", "xfsprogs"),
    ("btrfs", "btrfs quotas and subvolumes cannot be inspected by hand", "btrfs-progs"),
];

pub fn check(r: &mut Report, admin: &str) {
    for (tool, lost, pkg) in TOOLS {
        if have(tool) {
            r.say(Level::Ok, format!("tool {tool}"), None);
        } else {
            r.say(
                Level::Warn,
                format!("{tool} is missing: {lost}"),
                Some(&format!("apt-get install {pkg}")),
            );
        }
    }
    let (there, missing): (Vec<&str>, Vec<&str>) =
        ["ext4", "xfs", "btrfs"].into_iter().partition(|fs| kernel_has(fs));
    if missing.is_empty() {
        r.say(Level::Ok, format!("the kernel has {}", there.join(", ")), None);
    } else {
        let load = missing.iter().map(|fs| format!("modprobe {fs}")).collect::<Vec<_>>();
        r.say(
            Level::Warn,
            format!(
                "the kernel has no {}: pools or volumes of that filesystem cannot be used",
                missing.join(", ")
            ),
            Some(&format!("{} (if the pools need it)", load.join("; "))),
        );
    }
    if Path::new("/dev/loop-control").exists() {
        r.say(Level::Ok, "/dev/loop-control is there (loop pools can attach images)", None);
    } else {
        r.say(
            Level::Warn,
            "no /dev/loop-control: loop pools cannot be used",
            Some("modprobe loop (in a container: give it /dev/loop-control and the loop devices)"),
        );
    }
    check_engine(r);
    check_dir(r, Path::new("/run/docker/plugins"), "Docker looks for plugin sockets");
    if let Some(dir) = admin.strip_prefix("unix://").and_then(|p| Path::new(p).parent()) {
        check_dir(r, dir, "the admin socket goes");
    }
}

/// Whether Docker's engine answers (`docker info`, bounded).
fn check_engine(r: &mut Report) {
    if !have("docker") {
        r.say(
            Level::Warn,
            "the docker CLI is not installed here; Docker's view was not checked",
            None,
        );
        return;
    }
    let out = run_bounded(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        Duration::from_secs(20),
    );
    match out {
        Some(o) if o.status.success() => {
            let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
            r.say(Level::Ok, format!("Docker's engine answers (version {version})"), None);
        }
        Some(o) => r.say(
            Level::Fail,
            format!("Docker's engine does not answer: {}", first_line(&o.stderr)),
            Some("start dockerd (systemctl start docker), or set DOCKER_HOST to where it listens"),
        ),
        None => r.say(
            Level::Fail,
            "Docker's engine did not answer within 20 s",
            Some("is dockerd stuck? `systemctl status docker`"),
        ),
    }
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().next().unwrap_or("").trim().to_string()
}

/// A directory a socket is made in: missing is fine (the daemon makes
/// it); open for others to write is not.
fn check_dir(r: &mut Report, dir: &Path, what: &str) {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => r.say(
            Level::Fail,
            format!("{} is not a directory ({what} there)", dir.display()),
            Some("remove it; the daemon makes the directory"),
        ),
        Ok(m) if m.mode() & 0o002 != 0 => r.say(
            Level::Fail,
            format!(
                "{} is writable by every user (mode {:o}): anyone could put a socket in \
                 the daemon's place",
                dir.display(),
                m.mode() & 0o777
            ),
            Some(&format!("chmod o-w {}", dir.display())),
        ),
        Ok(m) => r.say(
            Level::Ok,
            format!("{} ({what}), mode {:o}", dir.display(), m.mode() & 0o777),
            None,
        ),
        Err(_) => r.say(
            Level::Ok,
            format!("{} is not there yet ({what}; the daemon makes it)", dir.display()),
            None,
        ),
    }
}
