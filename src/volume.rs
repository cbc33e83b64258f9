//! The volume record: the Rancher v1 `volume` resource as ballast keeps it.

use std::collections::BTreeMap;

use crate::{Error, Result};

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
        format!("1v{}", self.id)
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

    pub fn mount_count(&self) -> u32 {
        self.mounts.values().sum()
    }

    pub fn created_rfc3339(&self) -> String {
        rfc3339_ms(self.created_ms)
    }
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC), always with
/// three fractional digits: the admin API filters and sorts dates as
/// text, and only a fixed width makes text order time order (`…:01Z`
/// and `…:01.5Z` would sort after `…:01.75Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
    let looks_like_id = ["1v", "1s", "1b"].iter().any(|p| {
        name.strip_prefix(p).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if looks_like_id {
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

    #[test]
    fn rfc3339_is_utc_with_milliseconds_whose_text_order_is_time_order() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339_ms(1_795_656_141_175), "2026-11-26T01:22:21.175Z");
        let times = [1_000, 1_500, 1_750, 1_751, 2_000, 61_000];
        let texts: Vec<String> = times.iter().map(|t| rfc3339_ms(*t)).collect();
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
        for t in &texts {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }
}
