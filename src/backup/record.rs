//! The backup record (docs/design.md, "Backups"): what this host knows of
//! one backup. Rows are made by a backup taken here, or imported from a
//! target's repository when it is listed (a backup taken on another
//! host).

use super::VolumeMeta;

/// `creating` → `created` (or `error`); `removed` once forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    Creating,
    Created,
    Error,
    Removed,
}

impl BackupState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Creating => "creating",
            BackupState::Created => "created",
            BackupState::Error => "error",
            BackupState::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "creating" => BackupState::Creating,
            "created" => BackupState::Created,
            "error" => BackupState::Error,
            "removed" => BackupState::Removed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// Row id; never reused.
    pub id: i64,
    /// The backup target's name.
    pub target: String,
    /// The restic snapshot id, once written.
    pub restic_id: Option<String>,
    pub name: String,
    /// The volume backed up, when it is one of this host's.
    pub volume_id: Option<i64>,
    /// The snapshot it was read from, when taken here.
    pub snapshot_id: Option<i64>,
    pub meta: VolumeMeta,
    pub state: BackupState,
    /// Progress or failure, in words.
    pub message: String,
    pub created_ms: i64,
    pub size_bytes: u64,
    pub stored_bytes: u64,
}

impl Backup {
    /// The public id, Rancher style (`1b7`).
    pub fn public_id(&self) -> String {
        format!("1b{}", self.id)
    }

    /// The restic snapshot's id as restic shows it (8 hex digits).
    pub fn short_id(&self) -> Option<&str> {
        self.restic_id.as_deref().map(|id| &id[..id.len().min(8)])
    }
}
