//! The backup record (docs/design.md, "Backups"): what this host knows of
//! one backup. Rows are made by a backup taken here, or imported from a
//! target's repository when it is listed (a backup taken on another
//! host). With it, [`VolumeMeta`]: what every backup records of its
//! volume, which the backup engine writes into the repository.

use std::collections::BTreeMap;

/// What ballast records about the volume in each backup, so that a host
/// with an empty state directory knows what every backup holds. Stored in
/// the restic snapshot's tags (`ballast`, `volume=NAME`, `id=1v7`) and its
/// description (this, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMeta {
    /// The volume's name when it was backed up.
    pub volume_name: String,
    /// Its public id on the host that backed it up (`1v7`).
    pub volume_id: String,
    /// The snapshot the backup was read from (`1s9`); empty when it read
    /// the live volume.
    pub snapshot_id: String,
    /// The pool backend it lived in (`dir`, `btrfs`, `loop`).
    pub backend: String,
    /// Its size limit, if it had one.
    pub size_bytes: Option<u64>,
    /// Its driverOpts at creation (never secrets; see docs/design.md,
    /// "driverOpts").
    pub driver_opts: BTreeMap<String, String>,
    /// The host that made the backup.
    pub host: String,
    /// The identity of the ballast state directory that made it (random,
    /// made once): volume ids are only unique per state directory, so
    /// retention and parents go by both.
    #[serde(default)]
    pub host_id: String,
    /// The backup's own id on that host (`1b7`), so that the host
    /// recognizes it when listing the repository.
    #[serde(default)]
    pub backup_id: String,
}

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
        crate::public_id::Kind::Backup.id(self.id)
    }

    /// The name of the snapshot taken for this backup when none was
    /// named, removed once read: the job names it, and start-up recovery
    /// finds one a crash left by this name.
    pub fn snapshot_name(&self) -> String {
        format!("backup-{}", self.public_id())
    }

    /// The restic snapshot's id as restic shows it (8 hex digits).
    pub fn short_id(&self) -> Option<&str> {
        self.restic_id.as_deref().map(|id| &id[..id.len().min(8)])
    }
}
