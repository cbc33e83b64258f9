//! What `ballast serve` checks of a valid configuration against the host
//! at start-up, shared with `ballast config check` so that a file the
//! check passes does not stop the daemon: the host-path roots exist, the
//! admin socket's group exists, and each pool is either there already or
//! can be made now.

use std::path::Path;

use crate::config::Config;
use crate::pool::{MARKER, Pool};

/// Runs the checks without changing anything. `serve` makes the state
/// directory and `<state-dir>/pools` first, so their absence is no fault.
///
/// A pool that is not marked yet is checked as a new pool. The daemon
/// itself starts with such a pool *unavailable* when its metadata knows
/// volumes there (a disk not mounted yet), which only the daemon can tell.
pub fn host(config: &Config, state_dir: &Path) -> Result<(), String> {
    crate::core::host_path_roots(config)?;
    socket_group(config)?;
    let pools_home = state_dir.join("pools");
    for pool in config.pools.iter().filter(|p| !p.path.join(MARKER).exists()) {
        Pool::check_new(pool, pool.path.parent() == Some(pools_home.as_path()))?;
    }
    Ok(())
}

/// The group id of `[admin] socket_group`, if set; a group that does not
/// exist stops start-up.
pub fn socket_group(config: &Config) -> Result<Option<u32>, String> {
    let Some(group) = &config.admin.socket_group else { return Ok(None) };
    group_id(group)
        .map(Some)
        .ok_or_else(|| format!("[admin] socket_group: no group named {group:?}"))
}

fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == group).then(|| f.nth(1)?.parse().ok())?
    })
}
