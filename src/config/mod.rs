//! The TOML configuration, validated as a whole before anything starts:
//! a bad file stops start-up with a message naming the file, the
//! key and the problem.
//!
//! This file parses and validates. `reference.rs` describes every key
//! (type, default, meaning, example) as data beside it, `render.rs`
//! renders that description as the README's reference and the commented
//! example file, `summary.rs` says what a valid file sets up, and
//! `syntax.rs` reports TOML errors without quoting the file.

mod cluster;
pub mod reference;
mod render;
mod summary;
mod syntax;

pub use cluster::{ClusterConfig, host_name};
pub use render::{Flag, example_file, markdown};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::pool::{BackendKind, DEFAULT_LOOP_SIZE, FsKind, PoolConfig, Scope};
use crate::units;

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/ballast/ballast.toml";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    trash_retention: Option<String>,
    #[serde(default)]
    host_path_roots: Vec<PathBuf>,
    #[serde(default)]
    pool: Vec<RawPool>,
    #[serde(default)]
    backup_target: Vec<RawTarget>,
    admin: Option<RawAdmin>,
    cluster: Option<cluster::RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    backend: String,
    path: Option<PathBuf>,
    #[serde(default)]
    default: bool,
    scope: Option<String>,
    fs: Option<String>,
    default_size: Option<String>,
    overcommit: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    url: String,
    endpoint: Option<String>,
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    password_file: Option<PathBuf>,
    keep_last: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    access_key: Option<String>,
    secret_key: Option<String>,
    socket_group: Option<String>,
    #[serde(default)]
    trust_forwarded_headers: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

/// Where backups go. Credentials stay here; they are never shown (the
/// `Debug` output hides them too).
#[derive(Clone, PartialEq)]
pub struct BackupTarget {
    pub name: String,
    /// `file:///path` or `s3://bucket/prefix`.
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// The repository password's file; generated into the state directory
    /// when absent.
    pub password_file: Option<PathBuf>,
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
}

impl std::fmt::Debug for BackupTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupTarget")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdminConfig {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub socket_group: Option<String>,
    /// Links are built from `X-Forwarded-Proto/Host/Port/Prefix` (set by
    /// a reverse proxy in front of the TCP listener) rather than `Host`.
    pub trust_forwarded_headers: bool,
    /// PEM files of the TCP listener's certificate chain and private key:
    /// with them it speaks HTTPS only.
    pub tls: Option<TlsFiles>,
    /// The TCP listener may serve plain HTTP on a non-loopback address,
    /// sending the keys in clear.
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub trash_retention: Duration,
    pub host_path_roots: Vec<PathBuf>,
    pub pools: Vec<PoolConfig>,
    pub backup_targets: Vec<BackupTarget>,
    pub admin: AdminConfig,
    /// The cluster this host belongs to, if any.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Loads the config. `explicit` says whether the user named the file:
    /// a missing default file means built-in defaults, a missing named
    /// file is an error.
    pub fn load(path: &Path, explicit: bool, state_dir: &Path) -> Result<Config, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(e) => return Err(format!("config {}: cannot read: {e}", path.display())),
        };
        Config::parse(&text, state_dir).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str, state_dir: &Path) -> Result<Config, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax::describe(text, &e))?;
        let trash_retention = match &raw.trash_retention {
            None => Duration::from_secs(24 * 3600),
            Some(s) => {
                units::parse_duration(s).map_err(|e| format!("key `trash_retention`: {e}"))?
            }
        };
        let mut pools = Vec::new();
        for (i, p) in raw.pool.iter().enumerate() {
            let at = format!("[[pool]] #{} ({:?})", i + 1, p.name);
            crate::volume::validate_name(&p.name).map_err(|e| format!("{at}: key `name`: {e}"))?;
            if pools.iter().any(|q: &PoolConfig| q.name == p.name) {
                return Err(format!(
                    "{at}: key `name`: another pool is already named {:?}",
                    p.name
                ));
            }
            let backend = match p.backend.as_str() {
                "dir" => BackendKind::Dir,
                "btrfs" => BackendKind::Btrfs,
                "loop" => BackendKind::Loop,
                other => {
                    return Err(format!(
                        "{at}: key `backend`: unknown backend {other:?}; valid: dir, btrfs, loop"
                    ));
                }
            };
            if backend != BackendKind::Loop
                && (p.fs.is_some() || p.default_size.is_some() || p.overcommit.is_some())
            {
                return Err(format!(
                    "{at}: keys `fs`, `default_size` and `overcommit` apply to loop pools only"
                ));
            }
            let fs = match p.fs.as_deref() {
                None => FsKind::Ext4,
                Some(f) => FsKind::parse(f).ok_or_else(|| {
                    format!("{at}: key `fs`: unknown filesystem {f:?}; valid: ext4, xfs")
                })?,
            };
            let default_size = match p.default_size.as_deref() {
                None => DEFAULT_LOOP_SIZE,
                Some(s) => units::parse_size(s)
                    .map_err(|e| format!("{at}: key `default_size`: {s:?}: {e}"))?,
            };
            let overcommit = p.overcommit.unwrap_or(1.0);
            if !(overcommit.is_finite() && overcommit > 0.0) {
                return Err(format!(
                    "{at}: key `overcommit`: {overcommit} must be a number above 0 (1.0 = none)"
                ));
            }
            let scope = match p.scope.as_deref() {
                None | Some("local") => Scope::Local,
                Some("global") => Scope::Global,
                Some(other) => {
                    return Err(format!(
                        "{at}: key `scope`: unknown scope {other:?}; valid: local, global"
                    ));
                }
            };
            let path = p.path.clone().unwrap_or_else(|| state_dir.join("pools").join(&p.name));
            if !path.is_absolute() {
                return Err(format!(
                    "{at}: key `path`: {} is not an absolute path",
                    path.display()
                ));
            }
            pools.push(PoolConfig {
                name: p.name.clone(),
                backend,
                path,
                fs,
                default_size,
                overcommit,
                default: p.default,
                scope,
                host_area: None,
            });
        }
        match pools.iter().filter(|p| p.default).count() {
            0 if pools.is_empty() => pools.push(PoolConfig {
                name: "default".into(),
                backend: BackendKind::Dir,
                path: state_dir.join("pools").join("default"),
                default: true,
                scope: Scope::Local,
                fs: FsKind::Ext4,
                default_size: DEFAULT_LOOP_SIZE,
                overcommit: 1.0,
                host_area: None,
            }),
            0 => pools[0].default = true,
            1 => {}
            _ => {
                let names: Vec<_> =
                    pools.iter().filter(|p| p.default).map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "key `default`: more than one pool is the default: {}",
                    names.join(", ")
                ));
            }
        }
        if let Some(a) = &raw.admin {
            if a.tls_cert.is_some() != a.tls_key.is_some() {
                return Err("[admin]: `tls_cert` and `tls_key` must be set together".into());
            }
            for (key, path) in [("tls_cert", &a.tls_cert), ("tls_key", &a.tls_key)] {
                if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                    return Err(format!("[admin]: key `{key}`: must be an absolute path"));
                }
            }
        }
        let admin = raw
            .admin
            .map(|a| AdminConfig {
                access_key: a.access_key,
                secret_key: a.secret_key,
                socket_group: a.socket_group,
                trust_forwarded_headers: a.trust_forwarded_headers,
                tls: a.tls_cert.zip(a.tls_key).map(|(cert, key)| TlsFiles { cert, key }),
                insecure: a.insecure,
            })
            .unwrap_or_default();
        if admin.access_key.is_some() != admin.secret_key.is_some() {
            return Err("[admin]: `access_key` and `secret_key` must be set together".into());
        }
        // An empty key would let `curl -u :` through the TCP listener.
        for (key, value) in [("access_key", &admin.access_key), ("secret_key", &admin.secret_key)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!(
                    "[admin]: key `{key}` is empty; the TCP listener's basic auth needs a \
                     non-empty access key and secret key"
                ));
            }
        }
        let mut backup_targets: Vec<BackupTarget> = Vec::new();
        for (i, t) in raw.backup_target.into_iter().enumerate() {
            let at = format!("[[backup_target]] #{} ({:?})", i + 1, t.name);
            crate::volume::validate_name(&t.name).map_err(|e| format!("{at}: key `name`: {e}"))?;
            if backup_targets.iter().any(|b| b.name == t.name) {
                return Err(format!(
                    "{at}: key `name`: another backup target is already named {:?}",
                    t.name
                ));
            }
            // URLs are not echoed in errors: a mistyped one may hold a key.
            if !(t.url.starts_with("file:///") || t.url.starts_with("s3://")) {
                return Err(format!(
                    "{at}: key `url`: neither file:///absolute/path nor s3://bucket/prefix"
                ));
            }
            for (key, url) in [("url", Some(&t.url)), ("endpoint", t.endpoint.as_ref())] {
                if url.is_some_and(|u| has_userinfo(u)) {
                    return Err(format!(
                        "{at}: key `{key}`: credentials do not go in the URL (user:password@); \
                         set them as `access_key` and `secret_key`"
                    ));
                }
            }
            for (key, n) in [
                ("keep_last", t.keep_last),
                ("keep_daily", t.keep_daily),
                ("keep_weekly", t.keep_weekly),
            ] {
                if n == Some(0) {
                    return Err(format!(
                        "{at}: key `{key}`: 0 would forget every backup right after it is taken; \
                         leave it out to keep everything"
                    ));
                }
            }
            if t.access_key.is_some() != t.secret_key.is_some() {
                return Err(format!("{at}: `access_key` and `secret_key` must be set together"));
            }
            if let Some(p) = t.password_file.as_ref().filter(|p| !p.is_absolute()) {
                return Err(format!(
                    "{at}: key `password_file`: {} is not an absolute path",
                    p.display()
                ));
            }
            if t.url.starts_with("file://") && t.endpoint.is_some() {
                return Err(format!("{at}: key `endpoint`: only s3:// targets have an endpoint"));
            }
            if let Some(rest) = t.url.strip_prefix("s3://")
                && rest.split('/').next().is_none_or(str::is_empty)
            {
                return Err(format!("{at}: key `url`: it names no bucket (s3://bucket/prefix)"));
            }
            backup_targets.push(BackupTarget {
                name: t.name,
                url: t.url,
                endpoint: t.endpoint,
                region: t.region,
                access_key: t.access_key,
                secret_key: t.secret_key,
                password_file: t.password_file,
                keep_last: t.keep_last,
                keep_daily: t.keep_daily,
                keep_weekly: t.keep_weekly,
            });
        }
        let cluster = raw.cluster.map(cluster::parse).transpose()?;
        if let Some(c) = &cluster {
            for p in pools.iter_mut().filter(|p| p.scope == Scope::Global) {
                // Two hosts mounting one filesystem image (or btrfs) at
                // once would corrupt it: only directories are shared.
                if p.backend != BackendKind::Dir {
                    return Err(format!(
                        "[[pool]] {:?}: key `scope`: only a dir pool can be shared by a cluster's \
                         hosts (its path on a shared filesystem); make it local",
                        p.name
                    ));
                }
                p.host_area = Some(c.node.clone());
            }
        }
        Ok(Config {
            trash_retention,
            host_path_roots: raw.host_path_roots,
            pools,
            backup_targets,
            admin,
            cluster,
        })
    }

    pub fn default_pool(&self) -> &PoolConfig {
        self.pools.iter().find(|p| p.default).expect("validation guarantees one default pool")
    }
}

/// Whether `url` has a `user[:password]@` before its host: an `@` between
/// `scheme://` and the first `/` after it.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().is_some_and(|authority| authority.contains('@'))
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
