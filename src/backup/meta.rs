//! What a ballast backup records beside the files: the snapshot's
//! description (JSON) holds the [`VolumeMeta`] and the root directory's
//! owner and mode, which restic's tree format has no place for (the tree
//! starts below the root).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{Error, Result, VolumeMeta};

/// The root directory's owner and mode bits (permissions, setuid, setgid,
/// sticky).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct RootMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl RootMeta {
    /// Of the directory `path` (not following a symlink).
    pub fn read(path: &Path) -> Result<RootMeta> {
        let m = std::fs::symlink_metadata(path)
            .map_err(|e| Error::Failed(format!("reading {}: {e}", path.display())))?;
        if !m.is_dir() {
            return Err(Error::Failed(format!("{} is not a directory", path.display())));
        }
        Ok(RootMeta { mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid() })
    }

    /// Of the open directory `dir` (shown as `path`).
    pub fn of(dir: std::os::fd::BorrowedFd<'_>, path: &Path) -> Result<RootMeta> {
        let st = rustix::fs::fstat(dir)
            .map_err(|e| Error::Failed(format!("reading {}: {e}", path.display())))?;
        Ok(RootMeta { mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid })
    }

    /// Gives the directory `path` this owner and mode. Owner first: chown
    /// clears setuid and setgid.
    pub fn apply(&self, path: &Path) -> Result<()> {
        let fail = |e: std::io::Error| {
            Error::Failed(format!("setting the owner and mode of {}: {e}", path.display()))
        };
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(fail)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(self.mode)).map_err(fail)
    }
}

/// The snapshot description: the volume's fields at the top level (so
/// `restic snapshots --json` shows them plainly) and `root`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Description {
    #[serde(flatten)]
    pub meta: VolumeMeta,
    /// Absent in descriptions written by hand: the restore then leaves
    /// the destination's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootMeta>,
}

impl Description {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a description serializes")
    }

    pub fn parse(text: &str) -> Option<Description> {
        serde_json::from_str(text).ok()
    }
}
