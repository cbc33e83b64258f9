//! The volume record: the Rancher v1 `volume` resource as ballast keeps it.

use std::collections::BTreeMap;

use crate::{Error, Result};

// The time helpers live in `units`; these names stay for the callers that
// still reach them here.

/// A volume's lifecycle state (docs/design.md, "Volume states").
/// `Creating` is internal: a row in that state was never acknowledged and
/// is rolled back at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Creating,
    Requested,
    Inactive,
    Active,
    Removed,
    Purged,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Requested => "requested",
            State::Inactive => "inactive",
            State::Active => "active",
            State::Removed => "removed",
            State::Purged => "purged",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "creating" => State::Creating,
            "requested" => State::Requested,
            "inactive" => State::Inactive,
            "active" => State::Active,
            "removed" => State::Removed,
            "purged" => State::Purged,
            other => {
                return Err(Error::Internal(format!(
                    "unknown volume state {other:?} in the metadata store"
                )));
            }
        })
    }

    /// Whether Docker (and name lookups) can see a volume in this state.
    pub fn is_live(self) -> bool {
        matches!(self, State::Requested | State::Inactive | State::Active)
    }
}

/// Rancher's `transitioning` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transitioning {
    No,
    Yes,
    Error,
}

impl Transitioning {
    pub fn as_str(self) -> &'static str {
        match self {
            Transitioning::No => "no",
            Transitioning::Yes => "yes",
            Transitioning::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "yes" => Transitioning::Yes,
            "error" => Transitioning::Error,
            _ => Transitioning::No,
        }
    }
}

/// One volume, as stored. Mount IDs map to how many times Docker mounted
/// the volume under that ID: a multiset, since one ID can arrive in several
/// Mounts.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Row id in the store; never reused.
    pub id: i64,
    pub name: String,
    pub description: String,
    pub driver_opts: BTreeMap<String, String>,
    pub pool: String,
    pub state: State,
    pub transitioning: Transitioning,
    pub transitioning_message: String,
    pub created_ms: i64,
    pub removed_ms: Option<i64>,
    pub size_bytes: Option<u64>,
    pub used_bytes: u64,
    pub mounts: BTreeMap<String, u32>,
    /// For a host-path volume (`-o path=`), the host directory it is.
    pub host_path: Option<std::path::PathBuf>,
    /// While a new volume is not yet filled from its source, the source's
    /// public id (`1v3`, `1s7`). Such a volume never mounts: a fill cut by
    /// a crash starts again at start-up, a failed one stays unusable.
    pub fill_from: Option<String>,
    /// When the content last changed or may have: its creation, its last
    /// unmount, a revert or restore. A backup of a snapshot taken after
    /// this holds the volume's data (deallocate needs one).
    pub written_ms: i64,
    /// Scheduled snapshots and backups, and when they last ran.
    pub schedule: crate::schedule::Schedule,
    /// For a volume deallocated on the strength of a backup (cold
    /// archive), that backup's row id: its data lives there now, and the
    /// next Mount restores it (never an empty volume in its place).
    pub archived_in: Option<i64>,
    /// For a cluster volume (docs/cluster.md): its identity in the
    /// cluster's registry and its home host.
    pub cluster: Option<Membership>,
}

/// A volume's place in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The registry's key: the volume's storage key on every host.
    pub key: String,
    /// The host that made it: where a local pool's bytes are.
    pub home: String,
}

impl Volume {
    /// The public id, Rancher style (`1v42`).
    pub fn public_id(&self) -> String {
        crate::public_id::Kind::Volume.id(self.id)
    }

    /// Storage key inside a pool. Derived from the id, never the name, so
    /// no user input ever becomes part of a path.
    /// A cluster volume's is its cluster key, the same on every host, so
    /// that a shared pool holds its bytes once for all of them.
    pub fn storage_key(&self) -> String {
        match &self.cluster {
            Some(m) => format!("c{}", m.key),
            None => format!("v{}", self.id),
        }
    }

    /// The storage key of the copy an in-place restore builds beside the
    /// volume before swapping it in: the job names it, and start-up
    /// recovery removes one a crash left by this name.
    pub fn restore_staging_key(&self) -> String {
        format!("restore-{}", self.storage_key())
    }

    pub fn mount_count(&self) -> u32 {
        self.mounts.values().sum()
    }

    pub fn created_rfc3339(&self) -> String {
        crate::units::rfc3339_ms(self.created_ms)
    }
}

/// The longest volume name Docker's local driver accepts.
pub const MAX_NAME_LEN: usize = 255;

/// Checks a volume name against `^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$`,
/// Docker's own rule for its local driver. Docker does not check names
/// for plugins, so every entry point calls this before anything else.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidInput(format!(
            "invalid volume name {:?}: {why}; a name is 1 to {MAX_NAME_LEN} characters of \
             [A-Za-z0-9_.-] and starts with a letter or digit",
            truncate(name, 80)
        )))
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return bad("it is empty"),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return bad("it must start with a letter or digit");
        }
        Some(_) => {}
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("it is {} characters long", name.len()));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return bad(&format!("{c:?} is not allowed"));
    }
    Ok(())
}

/// [`validate_name`] for a name about to be given to a volume or a
/// snapshot: also refuses names that read as public ids (`1v7`, `1s7`,
/// `1b7`), which the admin API and the CLI would take for another
/// resource's id.
/// The longest description a volume keeps.
pub const MAX_DESCRIPTION: usize = 4096;

pub fn validate_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::InvalidInput(format!(
            "a description is at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

pub fn validate_new_name(name: &str) -> Result<()> {
    validate_name(name)?;
    if crate::public_id::looks_like_id(name) {
        return Err(Error::InvalidInput(format!(
            "invalid name {name:?}: it reads as a resource id (1v<n>, 1s<n>, 1b<n>), so the admin \
             API and the CLI could not tell it from one; choose another name"
        )));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_names() {
        for name in ["db", "a", "A.b_c-d", "0", &"f".repeat(64), &"x".repeat(255)] {
            validate_name(name).unwrap();
        }
    }

    #[test]
    fn refuses_unsafe_names() {
        for name in
            ["", "..", "../x", "a/b", ".hidden", "-x", "_x", "a\0b", "a b", "é", &"x".repeat(256)]
        {
            let err = validate_name(name).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{name:?}");
            assert!(err.to_string().contains("invalid volume name"), "{err}");
        }
    }

    #[test]
    fn new_names_that_read_as_ids_are_refused() {
        for name in ["1v1", "1s42", "1b7"] {
            validate_name(name).unwrap();
            let err = validate_new_name(name).unwrap_err().to_string();
            assert!(err.contains("reads as a resource id"), "{err}");
        }
        for name in ["1v", "1vx", "v1", "1v1a", "db"] {
            validate_new_name(name).unwrap();
        }
    }
}
