//! A volume's schedule: snapshots and backups taken by the daemon at an
//! interval, each with a retention count (a leaf: the record and its
//! parsing from driverOpts or the admin API).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::units;
use crate::{Error, Result};

/// The driverOpts keys of a schedule.
pub const KEYS: [&str; 5] =
    ["snapshot-every", "snapshot-keep", "backup-every", "backup-keep", "backup-target"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Schedule {
    /// Seconds between scheduled snapshots.
    pub snapshot_every: Option<u64>,
    /// How many scheduled snapshots to keep (the oldest go).
    pub snapshot_keep: Option<u32>,
    /// Seconds between scheduled backups.
    pub backup_every: Option<u64>,
    /// How many backups of the volume to keep in the target.
    pub backup_keep: Option<u32>,
    /// The target of scheduled backups (the only one when unset).
    pub backup_target: Option<String>,
    /// When the last scheduled snapshot and backup were started (ms).
    pub last_snapshot_ms: i64,
    pub last_backup_ms: i64,
}

impl Schedule {
    pub fn is_empty(&self) -> bool {
        self.snapshot_every.is_none() && self.backup_every.is_none()
    }

    /// Whether both ask for the same snapshots and backups (when each
    /// last ran aside): a PUT of the volume as fetched changes nothing.
    pub fn same_settings(&self, other: &Schedule) -> bool {
        (self.snapshot_every, self.snapshot_keep, self.backup_every, self.backup_keep)
            == (other.snapshot_every, other.snapshot_keep, other.backup_every, other.backup_keep)
            && self.backup_target == other.backup_target
    }

    /// Reads the schedule keys of driverOpts (others are ignored).
    pub fn from_opts(raw: &BTreeMap<String, String>) -> Result<Schedule> {
        let get = |k: &str| raw.get(k).map(String::as_str);
        Schedule::parse(
            get("snapshot-every"),
            get("snapshot-keep"),
            get("backup-every"),
            get("backup-keep"),
            get("backup-target"),
        )
    }

    /// Builds a schedule from its five settings, as text; `None` or an
    /// empty string leaves one unset.
    pub fn parse(
        snapshot_every: Option<&str>,
        snapshot_keep: Option<&str>,
        backup_every: Option<&str>,
        backup_keep: Option<&str>,
        backup_target: Option<&str>,
    ) -> Result<Schedule> {
        let s = Schedule {
            snapshot_every: set(snapshot_every).map(|v| every("snapshot-every", v)).transpose()?,
            snapshot_keep: set(snapshot_keep).map(|v| keep("snapshot-keep", v)).transpose()?,
            backup_every: set(backup_every).map(|v| every("backup-every", v)).transpose()?,
            backup_keep: set(backup_keep).map(|v| keep("backup-keep", v)).transpose()?,
            backup_target: set(backup_target).map(str::to_string),
            last_snapshot_ms: 0,
            last_backup_ms: 0,
        };
        for (keep, every, what) in [
            (s.snapshot_keep.is_some(), s.snapshot_every.is_some(), "snapshot"),
            (
                s.backup_keep.is_some() || s.backup_target.is_some(),
                s.backup_every.is_some(),
                "backup",
            ),
        ] {
            if keep && !every {
                return Err(Error::InvalidInput(format!(
                    "option {what}-keep or backup-target needs {what}-every (how often)"
                )));
            }
        }
        Ok(s)
    }

    /// The settings as the admin API shows them.
    pub fn describe(&self) -> serde_json::Value {
        if self.is_empty() {
            return serde_json::Value::Null;
        }
        let secs = |s: Option<u64>| s.map(units::format_duration);
        let at = |ms: i64| (ms > 0).then(|| units::rfc3339_ms(ms));
        serde_json::json!({
            "snapshotEvery": secs(self.snapshot_every),
            "snapshotKeep": self.snapshot_keep,
            "backupEvery": secs(self.backup_every),
            "backupKeep": self.backup_keep,
            "backupTarget": self.backup_target,
            "lastSnapshot": at(self.last_snapshot_ms),
            "lastBackup": at(self.last_backup_ms),
        })
    }
}

fn every(key: &str, value: &str) -> Result<u64> {
    let d = units::parse_duration(value)
        .map_err(|e| Error::InvalidInput(format!("option {key}={value:?}: {e}")))?;
    if d.as_secs() == 0 {
        return Err(Error::InvalidInput(format!(
            "option {key}={value:?}: the interval must be at least 1s"
        )));
    }
    Ok(d.as_secs())
}

fn keep(key: &str, value: &str) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(Error::InvalidInput(format!(
            "option {key}={value:?} is invalid: expected a count of at least 1"
        ))),
    }
}

/// A setting given and not empty.
fn set(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_from_options_and_refuse_nonsense() {
        let opts: BTreeMap<String, String> = [("snapshot-every", "1h"), ("snapshot-keep", "24")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let s = Schedule::from_opts(&opts).unwrap();
        assert_eq!((s.snapshot_every, s.snapshot_keep), (Some(3600), Some(24)));
        assert!(s.backup_every.is_none() && !s.is_empty());
        for (every, keep, needle) in [
            (Some("0s"), None, "at least 1s"),
            (Some("soon"), None, "not a duration"),
            (Some("1h"), Some("0"), "at least 1"),
            (None, Some("3"), "needs snapshot-every"),
        ] {
            let err = Schedule::parse(every, keep, None, None, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
