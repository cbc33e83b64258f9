//! driverOpts (`docker volume create -o key=value`) parsed into a typed
//! request. Only syntax is checked here; whether a pool exists or can
//! enforce a size is the core's business.

use std::collections::{BTreeMap, HashMap};

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
    "path",
];

/// A create request after parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOpts {
    pub pool: Option<String>,
    pub size: Option<u64>,
    /// The filesystem of a loop pool's image.
    pub fs: Option<crate::config::FsKind>,
    pub description: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub from_volume: Option<String>,
    pub from_snapshot: Option<String>,
    /// An existing host directory the volume is (`isHostPath`).
    pub path: Option<std::path::PathBuf>,
}

/// Parses driverOpts. `None` (Docker's `"Opts": null`) is no options.
pub fn parse(raw: &BTreeMap<String, String>) -> Result<CreateOpts> {
    let mut opts = CreateOpts::default();
    for (key, value) in raw {
        match key.as_str() {
            "pool" => opts.pool = Some(non_empty(key, value)?.to_string()),
            "size" => opts.size = Some(parse_size(value).map_err(|why| bad(key, value, &why))?),
            "fs" => {
                opts.fs = Some(
                    crate::config::FsKind::parse(value)
                        .ok_or_else(|| bad(key, value, "expected ext4 or xfs"))?,
                )
            }
            "description" => opts.description = value.clone(),
            "uid" => opts.uid = Some(parse_id(key, value)?),
            "gid" => opts.gid = Some(parse_id(key, value)?),
            "mode" => opts.mode = Some(parse_mode(value)?),
            "from-volume" => opts.from_volume = Some(non_empty(key, value)?.to_string()),
            "from-snapshot" => opts.from_snapshot = Some(non_empty(key, value)?.to_string()),
            "path" => {
                if !value.starts_with('/') {
                    return Err(bad(key, value, "expected an absolute path"));
                }
                opts.path = Some(value.into());
            }
            _ => return Err(unknown_key(key)),
        }
    }
    if opts.path.is_some() {
        let clash = ["size", "fs", "uid", "gid", "mode", "from-volume", "from-snapshot"]
            .into_iter()
            .find(|k| raw.contains_key(*k));
        if let Some(k) = clash {
            return Err(Error::InvalidInput(format!(
                "option {k} cannot be combined with path: a host-path volume is the host directory as it is"
            )));
        }
    }
    if opts.from_volume.is_some() && opts.from_snapshot.is_some() {
        return Err(Error::InvalidInput(
            "options from-volume and from-snapshot cannot be combined: a volume starts from one source".into(),
        ));
    }
    Ok(opts)
}

impl CreateOpts {
    /// What the backend needs to make the storage.
    pub fn spec(&self) -> crate::pool::Spec {
        crate::pool::Spec {
            size: self.size,
            fs: self.fs,
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
        }
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

fn parse_id(key: &str, value: &str) -> Result<u32> {
    value.parse::<u32>().map_err(|_| bad(key, value, "expected a numeric id such as 1000"))
}

fn parse_mode(value: &str) -> Result<u32> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(mode),
        _ => Err(bad("mode", value, "expected an octal mode such as 0755")),
    }
}

/// Parses a size with binary units: `512M`, `10G`, `1Ti`, `4096`, `2GiB`.
pub fn parse_size(value: &str) -> std::result::Result<u64, String> {
    let usage = "expected a size such as 512M, 10G or 1T (binary units)";
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: u64 = num.parse().map_err(|_| usage.to_string())?;
    let unit = unit.trim_end_matches(['B', 'b']).trim_end_matches('i');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => return Err(usage.to_string()),
    };
    let bytes = num.checked_mul(1u64 << shift).ok_or_else(|| "it is too large".to_string())?;
    if bytes == 0 {
        return Err("it must be larger than zero".to_string());
    }
    Ok(bytes)
}

/// Bytes in binary units for people: `512 B`, `1.5 GiB`.
pub fn human_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{x:.1} {}", units[u]) }
}

/// Formats bytes with the largest binary unit that divides them.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
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
        for key in ["colour", "from-backup", "snapshot"] {
            let err = parse(&map(&[(key, "x")])).unwrap_err().to_string();
            assert!(err.contains(&format!("{key:?}")), "{err}");
            assert!(
                err.contains(
                    "pool, size, fs, description, uid, gid, mode, from-volume, from-snapshot, path"
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
        ] {
            let err = parse(&map(&[(k, v)])).unwrap_err().to_string();
            assert!(err.starts_with(&format!("option {k}=")), "{err}");
        }
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10Gi"), Ok(10 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999P").is_err());
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(1000), "1000");
    }
}
