//! Fencing: a host that may have lost its right to write a volume stops
//! writing it before anyone else may start (docs/cluster.md, "Fencing").
//!
//! Every mount of the volume's directory, in every mount namespace (a
//! container's bind is a mount of its own, in the container's namespace,
//! so remounting ours alone would change nothing for it), is remounted
//! read-only (`MS_REMOUNT|MS_BIND|MS_RDONLY`). The kernel refuses that
//! (`EBUSY`) while a file is open for writing on that mount: then the
//! processes of that namespace are killed, which is the only other way to
//! make sure they write no more — never those of the daemon's own
//! namespace or the host's (init's); any other failure is reported. Mounts are found by device and root in
//! `/proc/PID/mountinfo`, so whoever made them (Docker, a `docker run
//! --mount`, a shell) is covered.
//!
//! The remount itself runs in a child (`ballast __fence PID MOUNTPOINT`):
//! entering another mount namespace (`setns`) is refused to a threaded
//! process such as the daemon.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What fencing one directory did.
#[derive(Debug, Default, PartialEq)]
pub struct Fenced {
    /// Mounts now read-only.
    pub remounted: usize,
    /// Processes killed because a remount was refused.
    pub killed: usize,
    /// Mounts that could be neither remounted nor emptied of writers.
    pub failed: Vec<String>,
}

/// One line of `/proc/PID/mountinfo`, the fields fencing needs.
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    dev: (u32, u32),
    /// The directory of the filesystem that is mounted here.
    root: PathBuf,
    mount_point: PathBuf,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(_), Some(_), Some(dev), Some(root), Some(mp)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Some((major, minor)) = dev.split_once(':') else { continue };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
        out.push(Mount {
            dev: (major, minor),
            root: PathBuf::from(unescape(root)),
            mount_point: PathBuf::from(unescape(mp)),
        });
    }
    out
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(digits), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where `dir` is inside its filesystem: (device, path from the
/// filesystem's root), from this process's mounts.
fn locate(dir: &Path) -> std::io::Result<((u32, u32), PathBuf)> {
    let stat = rustix::fs::stat(dir)?;
    let dev = (rustix::fs::major(stat.st_dev), rustix::fs::minor(stat.st_dev));
    let mine = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?);
    let best = mine
        .iter()
        .filter(|m| m.dev == dev && dir.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .ok_or_else(|| std::io::Error::other(format!("no mount holds {}", dir.display())))?;
    let rest = dir.strip_prefix(&best.mount_point).unwrap_or(Path::new(""));
    Ok((dev, best.root.join(rest)))
}

/// Makes every mount of `dir`, in every mount namespace, read-only, or
/// kills the processes that keep it writable.
pub fn fence(dir: &Path) -> std::io::Result<Fenced> {
    let (dev, root) = locate(dir)?;
    let own_ns = std::fs::read_link("/proc/self/ns/mnt")?;
    // The host's own namespace (init's) is never emptied of processes.
    let host_ns = std::fs::read_link("/proc/1/ns/mnt").ok();
    // Namespace → (a process in it, every process in it).
    let mut namespaces: BTreeMap<PathBuf, Vec<i32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
            namespaces.entry(ns).or_default().push(pid);
        }
    }
    let mut done = Fenced::default();
    let mut seen = HashSet::new();
    for (ns, pids) in &namespaces {
        let Some(&pid) = pids.first() else { continue };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else { continue };
        for m in parse_mountinfo(&text) {
            if m.dev != dev || !m.root.starts_with(&root) {
                continue;
            }
            if !seen.insert((ns.clone(), m.mount_point.clone())) {
                continue;
            }
            let remounted = remount_from_outside(pid, &m.mount_point);
            let spare = *ns == own_ns || host_ns.as_ref() == Some(ns);
            if remounted == Remount::Done {
                done.remounted += 1;
            } else if remounted == Remount::Busy && !spare {
                // A writer holds a file open on it: stop the writers.
                for &p in pids {
                    if let Some(p) = rustix::process::Pid::from_raw(p)
                        && rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok()
                    {
                        done.killed += 1;
                    }
                }
            } else {
                done.failed.push(m.mount_point.display().to_string());
            }
        }
    }
    Ok(done)
}

/// What the helper made of one mount.
#[derive(Debug, PartialEq)]
enum Remount {
    Done,
    /// The kernel refused (`EBUSY`): a file is open for writing on it.
    Busy,
    /// Anything else: the process left, a path hidden, no permission.
    Failed,
}

/// The helper's exit status for `EBUSY`.
pub const BUSY: i32 = 3;

/// How long the helper may take (a hung filesystem blocks it).
const HELPER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

fn remount_from_outside(pid: i32, mount_point: &Path) -> Remount {
    let Ok(exe) = std::env::current_exe() else { return Remount::Failed };
    let child = Command::new(exe)
        .arg("__fence")
        .arg(pid.to_string())
        .arg(mount_point)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return Remount::Failed };
    let deadline = std::time::Instant::now() + HELPER_TIME;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Remount::Done,
            Ok(Some(status)) if status.code() == Some(BUSY) => return Remount::Busy,
            Ok(Some(_)) | Err(_) => return Remount::Failed,
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Remount::Failed;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// `ballast __fence PID MOUNTPOINT`: in PID's mount namespace, remounts
/// MOUNTPOINT read-only, keeping its other flags. Single-threaded, as
/// `setns` into a mount namespace requires.
pub fn remount_in(pid: &str, mount_point: &Path) -> Result<(), (i32, String)> {
    remount_inside(pid, mount_point).map_err(|(busy, e)| (if busy { BUSY } else { 1 }, e))
}

fn remount_inside(pid: &str, mount_point: &Path) -> Result<(), (bool, String)> {
    use rustix::fs::StatVfsMountFlags as F;
    use rustix::mount::MountFlags as M;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| (false, format!("process {pid}'s mount namespace: {e}")))?;
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Mount),
    )
    .map_err(|e| (false, format!("entering process {pid}'s mount namespace: {e}")))?;
    let now = rustix::fs::statvfs(mount_point)
        .map_err(|e| (false, format!("{}: {e}", mount_point.display())))?
        .f_flag;
    let mut flags = M::BIND | M::RDONLY;
    for (have, keep) in [
        (F::NOSUID, M::NOSUID),
        (F::NODEV, M::NODEV),
        (F::NOEXEC, M::NOEXEC),
        (F::NOATIME, M::NOATIME),
        (F::NODIRATIME, M::NODIRATIME),
        (F::RELATIME, M::RELATIME),
    ] {
        if now.contains(have) {
            flags |= keep;
        }
    }
    rustix::mount::mount_remount(mount_point, flags, "").map_err(|e| {
        let busy = e == rustix::io::Errno::BUSY;
        (busy, format!("remounting {} read-only: {e}", mount_point.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_device_root_and_mount_point_with_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw\n\
                    bad line\n";
        assert_eq!(
            parse_mountinfo(text),
            [Mount { dev: (98, 0), root: "/mnt1".into(), mount_point: "/mnt/parent dir".into() }]
        );
    }

    #[test]
    fn a_directory_is_located_in_its_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let (dev, root) = locate(dir.path()).unwrap();
        let stat = rustix::fs::stat(dir.path()).unwrap();
        assert_eq!(dev, (rustix::fs::major(stat.st_dev), rustix::fs::minor(stat.st_dev)));
        assert!(root.ends_with(dir.path().file_name().unwrap()), "{}", root.display());
    }
}
