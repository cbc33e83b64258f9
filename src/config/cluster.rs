//! The optional `[cluster]` table: where the etcd cluster is, what this
//! host is called in it, and how long its leases last. Without the table
//! the daemon is an island, as before (docs/cluster.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    etcd: Vec<String>,
    node: Option<String>,
    lease_ttl: Option<String>,
    mount_wait: Option<String>,
    user: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// The validated `[cluster]` table. The password is never shown (the
/// `Debug` output hides it).
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd's client URLs, `http://` or `https://`.
    pub etcd: Vec<String>,
    /// This host's name in the cluster; the host name when unset.
    pub node: String,
    /// How long this host's lease outlives its last keep-alive.
    pub lease_ttl: Duration,
    /// How long a Mount waits for another host to let go of a volume.
    pub mount_wait: Duration,
    pub user: Option<String>,
    pub password: Option<String>,
    /// PEM files: the CA that signed etcd's certificates, and this
    /// host's client certificate and key (both or neither).
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("etcd", &self.etcd)
            .field("node", &self.node)
            .field("lease_ttl", &self.lease_ttl)
            .field("mount_wait", &self.mount_wait)
            .field("user", &self.user)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// The shortest lease: a keep-alive goes out every fifth of it, and a
/// loaded host must still get one through in time.
const MIN_TTL: Duration = Duration::from_secs(2);

/// The longest lease: a crashed host's volumes wait this long for
/// another host.
const MAX_TTL: Duration = Duration::from_secs(300);

/// The longest wait a Mount may spend: Docker gives a Mount 30 s.
const MAX_MOUNT_WAIT: Duration = Duration::from_secs(20);

pub(super) fn parse(raw: RawCluster) -> Result<ClusterConfig, String> {
    let at = "[cluster]";
    if raw.etcd.is_empty() {
        return Err(format!("{at}: key `etcd`: name at least one endpoint (http://host:2379)"));
    }
    for url in &raw.etcd {
        // Not echoed: a mistyped URL may hold a password.
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{at}: key `etcd`: an endpoint is not an http:// or https:// URL"));
        }
        if url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .is_some_and(|a| a.contains('@'))
        {
            return Err(format!(
                "{at}: key `etcd`: credentials do not go in the URL; set `user` and `password`"
            ));
        }
    }
    let node = match raw.node {
        Some(node) => node,
        None => host_name()?,
    };
    crate::volume::validate_name(&node).map_err(|e| format!("{at}: key `node`: {e}"))?;
    let duration = |key: &str, value: &Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(s) => units::parse_duration(s).map_err(|e| format!("{at}: key `{key}`: {e}")),
    };
    let lease_ttl = duration("lease_ttl", &raw.lease_ttl, Duration::from_secs(10))?;
    if lease_ttl < MIN_TTL || lease_ttl > MAX_TTL {
        return Err(format!(
            "{at}: key `lease_ttl`: from {}s to {}s",
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs()
        ));
    }
    let mount_wait = duration("mount_wait", &raw.mount_wait, Duration::from_secs(10))?;
    if mount_wait > MAX_MOUNT_WAIT {
        return Err(format!(
            "{at}: key `mount_wait`: at most {}s, since Docker gives a Mount 30 s",
            MAX_MOUNT_WAIT.as_secs()
        ));
    }
    if raw.user.is_some() != raw.password.is_some() {
        return Err(format!("{at}: `user` and `password` must be set together"));
    }
    if raw.cert_file.is_some() != raw.key_file.is_some() {
        return Err(format!("{at}: `cert_file` and `key_file` must be set together"));
    }
    for (key, path) in
        [("ca_file", &raw.ca_file), ("cert_file", &raw.cert_file), ("key_file", &raw.key_file)]
    {
        if path.as_ref().is_some_and(|p| !p.is_absolute()) {
            return Err(format!("{at}: key `{key}`: must be an absolute path"));
        }
    }
    let tls = raw.ca_file.is_some() || raw.cert_file.is_some();
    if tls && raw.etcd.iter().any(|u| u.starts_with("http://")) {
        return Err(format!("{at}: TLS files are set but an endpoint is plain http://"));
    }
    Ok(ClusterConfig {
        etcd: raw.etcd,
        node,
        lease_ttl,
        mount_wait,
        user: raw.user,
        password: raw.password,
        ca_file: raw.ca_file,
        cert_file: raw.cert_file,
        key_file: raw.key_file,
    })
}

/// This machine's host name, the default node name.
pub fn host_name() -> Result<String, String> {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy();
    let short = name.split('.').next().unwrap_or_default();
    if short.is_empty() {
        return Err("[cluster]: key `node`: the host has no name; set one".into());
    }
    Ok(short.to_string())
}
