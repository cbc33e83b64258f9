//! driverOpts (`docker volume create -o key=value`) parsed into a typed
//! request. Only syntax is checked here; whether a pool exists or can
//! enforce a size is the core's business.

use std::collections::{BTreeMap, HashMap};

use crate::pool::{FsKind, Spec};
use crate::schedule::Schedule;
use crate::units;
use crate::{Error, Result};

/// Keys this build accepts, in the order error messages list them.
pub const VALID_KEYS: &[&str] = &[
    "pool",
    "size",
    "fs",
    "description",
    "uid",
    "gid",
    "mode",
    "from-volume",
    "from-snapshot",
    "from-backup",
    "path",
    "snapshot-every",
    "snapshot-keep",
    "backup-every",
    "backup-keep",
    "backup-target",
    "access-mode",
    "cluster",
    "follow",
];

/// A create request after parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOpts {
    pub pool: Option<String>,
    pub size: Option<u64>,
    /// The filesystem of a loop pool's image.
    pub fs: Option<FsKind>,
    pub description: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub from_volume: Option<String>,
    pub from_snapshot: Option<String>,
    /// A backup's id (`1b7`) or restic snapshot id.
    pub from_backup: Option<String>,
    /// An existing host directory the volume is (`isHostPath`).
    pub path: Option<std::path::PathBuf>,
    /// Scheduled snapshots and backups.
    pub schedule: Schedule,
}

/// Parses driverOpts. `None` (Docker's `"Opts": null`) is no options.
pub fn parse(raw: &BTreeMap<String, String>) -> Result<CreateOpts> {
    let mut opts = CreateOpts::default();
    for (key, value) in raw {
        match key.as_str() {
            "pool" => opts.pool = Some(non_empty(key, value)?.to_string()),
            "size" => {
                opts.size = Some(units::parse_size(value).map_err(|why| bad(key, value, &why))?)
            }
            "fs" => {
                opts.fs = Some(
                    FsKind::parse(value).ok_or_else(|| bad(key, value, "expected ext4 or xfs"))?,
                )
            }
            "description" => {
                crate::volume::validate_description(value)?;
                opts.description = value.clone()
            }
            "uid" => opts.uid = Some(parse_id(key, value)?),
            "gid" => opts.gid = Some(parse_id(key, value)?),
            "mode" => opts.mode = Some(parse_mode(value)?),
            "from-volume" => opts.from_volume = Some(non_empty(key, value)?.to_string()),
            "from-snapshot" => opts.from_snapshot = Some(non_empty(key, value)?.to_string()),
            "from-backup" => opts.from_backup = Some(non_empty(key, value)?.to_string()),
            "path" => {
                if !value.starts_with('/') {
                    return Err(bad(key, value, "expected an absolute path"));
                }
                opts.path = Some(value.into());
            }
            "cluster" | "follow" => {
                if !matches!(value.as_str(), "true" | "false") {
                    return Err(bad(key, value, "expected true or false"));
                }
            }
            "access-mode" => {
                crate::cluster::Access::parse(value).ok_or_else(|| {
                    bad(
                        key,
                        value,
                        &format!("expected {}", crate::cluster::Access::NAMES.join(", ")),
                    )
                })?;
            }
            k if crate::schedule::KEYS.contains(&k) => {}
            _ => return Err(unknown_key(key)),
        }
    }
    if opts.path.is_some() {
        let clash = [
            "size",
            "fs",
            "uid",
            "gid",
            "mode",
            "from-volume",
            "from-snapshot",
            "from-backup",
            "follow",
        ]
        .into_iter()
        .find(|k| raw.contains_key(*k));
        if let Some(k) = clash {
            return Err(Error::InvalidInput(format!(
                "option {k} cannot be combined with path: a host-path volume is the host directory as it is"
            )));
        }
    }
    opts.schedule = Schedule::from_opts(raw)?;
    let sources = [&opts.from_volume, &opts.from_snapshot, &opts.from_backup];
    if sources.iter().filter(|s| s.is_some()).count() > 1 {
        return Err(Error::InvalidInput(
            "options from-volume, from-snapshot and from-backup cannot be combined: a volume \
             starts from one source"
                .into(),
        ));
    }
    Ok(opts)
}

impl CreateOpts {
    /// What the backend needs to make the storage.
    pub fn spec(&self) -> Spec {
        Spec { size: self.size, fs: self.fs, uid: self.uid, gid: self.gid, mode: self.mode }
    }
}

/// Turns Docker's optional map into the canonical sorted map we store and
/// compare (Create is idempotent for the same options).
pub fn canonical(raw: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    raw.unwrap_or_default().into_iter().collect()
}

fn unknown_key(key: &str) -> Error {
    Error::InvalidInput(format!(
        "unknown option {key:?}; valid options are: {}",
        VALID_KEYS.join(", ")
    ))
}

fn bad(key: &str, value: &str, why: &str) -> Error {
    Error::InvalidInput(format!("option {key}={value:?} is invalid: {why}"))
}

fn non_empty<'a>(key: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() { Err(bad(key, value, "it must not be empty")) } else { Ok(value) }
}

/// The largest id a file can be given: 4294967295 is `(uid_t)-1`, which
/// chown takes as "leave unchanged".
const MAX_ID: u32 = u32::MAX - 1;

/// Digits only: Rust's integer parsers also take a leading `+`.
fn all_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

fn parse_id(key: &str, value: &str) -> Result<u32> {
    let usage = "expected a numeric id from 0 to 4294967294, such as 1000";
    match value.parse::<u32>() {
        Ok(id) if all_digits(value, 10) && id <= MAX_ID => Ok(id),
        _ => Err(bad(key, value, usage)),
    }
}

fn parse_mode(value: &str) -> Result<u32> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 && all_digits(digits, 8) => Ok(mode),
        _ => Err(bad("mode", value, "expected an octal mode such as 0755")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_every_known_key() {
        let o = parse(&map(&[
            ("pool", "fast"),
            ("size", "512M"),
            ("description", "db data"),
            ("uid", "1000"),
            ("gid", "50"),
            ("mode", "0750"),
            ("from-volume", "src"),
        ]))
        .unwrap();
        assert_eq!(o.pool.as_deref(), Some("fast"));
        assert_eq!(o.size, Some(512 << 20));
        assert_eq!((o.uid, o.gid, o.mode), (Some(1000), Some(50), Some(0o750)));
        assert_eq!(o.from_volume.as_deref(), Some("src"));
    }

    #[test]
    fn unknown_key_names_it_and_lists_valid_ones() {
        for key in ["colour", "from_backup", "snapshot"] {
            let err = parse(&map(&[(key, "x")])).unwrap_err().to_string();
            assert!(err.contains(&format!("{key:?}")), "{err}");
            assert!(
                err.contains(
                    "pool, size, fs, description, uid, gid, mode, from-volume, from-snapshot, from-backup, path, snapshot-every, snapshot-keep, backup-every, backup-keep, backup-target"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn malformed_values_name_the_key() {
        for (k, v) in [
            ("size", "lots"),
            ("size", "0"),
            ("uid", "-1"),
            ("gid", "root"),
            ("mode", "999"),
            ("mode", ""),
            ("mode", "+755"),
            ("mode", "0o+7"),
            ("gid", "+5"),
            ("uid", "4294967295"),
            ("uid", " 1"),
        ] {
            let err = parse(&map(&[(k, v)])).unwrap_err().to_string();
            assert!(err.starts_with(&format!("option {k}=")), "{err}");
        }
    }
}
