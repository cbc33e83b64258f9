//! The snapshot record: a point-in-time copy of one volume
//! (docs/design.md, "Snapshots").

use crate::{Error, Result};

/// `creating` → `created` (or `error`); `removed` after remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapState {
    Creating,
    Created,
    Error,
    Removed,
}

impl SnapState {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapState::Creating => "creating",
            SnapState::Created => "created",
            SnapState::Error => "error",
            SnapState::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "creating" => SnapState::Creating,
            "created" => SnapState::Created,
            "error" => SnapState::Error,
            "removed" => SnapState::Removed,
            other => {
                return Err(Error::Internal(format!(
                    "unknown snapshot state {other:?} in the metadata store"
                )));
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Row id; never reused.
    pub id: i64,
    pub name: String,
    pub volume_id: i64,
    pub state: SnapState,
    /// Progress or failure, in words.
    pub message: String,
    pub created_ms: i64,
    pub size_bytes: u64,
}

impl Snapshot {
    /// The public id, Rancher style (`1s7`).
    pub fn public_id(&self) -> String {
        crate::public_id::Kind::Snapshot.id(self.id)
    }

    /// Storage key inside the pool, derived from the id.
    pub fn storage_key(&self) -> String {
        format!("s{}", self.id)
    }
}
