//! Tests of the backup engine, on `file://` repositories in temporary
//! directories. One file per theme; the helpers are here.

mod bounds;
mod concurrent;
mod fidelity;
mod hostile;
mod incremental;
mod live;
mod password;
mod restic_cli;
mod s3;
mod tamper;
mod tree;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

use super::{BackupInfo, Progress, Repository, VolumeMeta};
use crate::config::BackupTarget;

/// A scratch directory with a repository, a state directory and a
/// password file in it.
pub(super) struct Fixture {
    pub dir: TempDir,
    pub target: BackupTarget,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "correct horse battery staple\n").unwrap();
        let target = target(&dir.path().join("repo"), Some(password));
        Fixture { dir, target }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The repository, opened with a state directory of its own.
    pub fn open(&self) -> Arc<dyn Repository> {
        super::open(&self.target, &self.path("state")).unwrap()
    }

    /// A new empty directory.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

pub(super) fn target(repo: &Path, password_file: Option<PathBuf>) -> BackupTarget {
    BackupTarget {
        name: "nas".into(),
        url: format!("file://{}", repo.display()),
        endpoint: None,
        region: None,
        access_key: None,
        secret_key: None,
        password_file,
        keep_last: None,
        keep_daily: None,
        keep_weekly: None,
    }
}

pub(super) fn meta(volume: &str, id: &str) -> VolumeMeta {
    VolumeMeta {
        volume_name: volume.into(),
        volume_id: id.into(),
        snapshot_id: "1s9".into(),
        backend: "dir".into(),
        size_bytes: Some(1 << 30),
        driver_opts: BTreeMap::from([("size".into(), "1G".into())]),
        host: "host-a".into(),
        host_id: "h-a".into(),
        backup_id: "1b1".into(),
    }
}

pub(super) fn quiet(_: Progress) {}

pub(super) fn backup(repo: &dyn Repository, src: &Path, volume: &str) -> BackupInfo {
    repo.backup(src, &meta(volume, &format!("1v{volume}")), None, &quiet).unwrap()
}

/// Every entry below `root` as `(path, description)`: type, mode, owner,
/// size, mtime (not of symlinks), link target, content, user xattrs, and
/// which earlier path it is a hard link of.
pub(super) fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> =
            std::fs::read_dir(root.join(&rel)).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let rel = rel.join(name);
            let path = root.join(&rel);
            let m = std::fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let mut d = format!(
                "mode {:o} owner {}:{} xattrs {:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                user_xattrs(&path)
            );
            if ft.is_symlink() {
                d += &format!(" -> {:?}", std::fs::read_link(&path).unwrap());
            } else {
                d += &format!(" mtime {}.{:09}", m.mtime(), m.mtime_nsec());
            }
            if ft.is_file() {
                if m.nlink() > 1
                    && let Some(first) = inodes.get(&m.ino())
                {
                    d += &format!(" hard link of {first:?}");
                } else {
                    inodes.insert(m.ino(), rel.clone());
                }
                let data = std::fs::read(&path).unwrap();
                d += &format!(" size {} content {:016x}", data.len(), fnv(&data));
            }
            if ft.is_dir() {
                stack.push(rel.clone());
            }
            out.insert(rel, d);
        }
    }
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

/// The `user.` xattrs of `path` (not following a symlink).
pub(super) fn user_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else { return Vec::new() };
    names[..n]
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user."))
        .map(|name| {
            let name = String::from_utf8(name.to_vec()).unwrap();
            let mut value = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap();
            value.truncate(len);
            (name, value)
        })
        .collect()
}

/// Mode bits, owner of a path.
pub(super) fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

/// Whether this process may chown and make device nodes (tests run as
/// root; elsewhere the checks that need it are skipped, or fail under
/// CI=true).
pub(super) fn root_or_skip(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "CI=true and {what} needs root");
    eprintln!("SKIPPED: {what} needs root");
    false
}
