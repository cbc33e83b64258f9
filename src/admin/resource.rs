//! Rancher v1 resource shapes: each resource with its `links` and the
//! `actions` valid now; volumes also as rows that collections filter and
//! sort without rendering them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::Admin;
use super::query::{Cell, Row};
use crate::backup::{Backup, BackupState};
use crate::core::{Holds, Offers};
use crate::pool::Scope;
use crate::public_id::Kind;
use crate::snapshot::{SnapState, Snapshot};
use crate::units::rfc3339_ms;
use crate::volume::{State as VolState, Volume};

/// What rendering volumes needs from the snapshots, gathered once per
/// request rather than once per volume.
pub struct Context {
    snapshot_counts: HashMap<i64, usize>,
    offers: Offers,
}

impl Context {
    pub fn new(a: &Admin) -> Context {
        let (snapshot_counts, _) = a.ballast.snapshot_summary();
        Context { snapshot_counts, offers: a.ballast.offers() }
    }
}

/// A volume resource (the fields of docs/design.md, "Fields"; links; the
/// actions valid now). Typed rather than a `Value`: a list of 10,000 is
/// serialized straight from these.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeView<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
    kind: &'static str,
    uuid: String,
    name: &'a str,
    description: &'a str,
    driver: &'a str,
    driver_opts: &'a BTreeMap<String, String>,
    external_id: &'a str,
    uri: Option<String>,
    is_host_path: bool,
    access_mode: &'static str,
    /// In a cluster, the host that made it (where a local pool's bytes
    /// are); null for a volume of this host alone.
    host_id: Option<&'a str>,
    /// The hosts that hold it in the cluster now.
    holders: Vec<String>,
    /// `local`, `free`, `held` (here), `heldElsewhere` or `fenced`.
    lease_state: &'static str,
    /// The seed's one instance: the first of `mount_ids`, or null.
    instance_id: Option<&'a str>,
    /// The mount IDs of the containers using it.
    mount_ids: Vec<&'a str>,
    image_id: Option<&'a str>,
    storage_pool_id: &'a str,
    size_bytes: Option<u64>,
    used_bytes: u64,
    mount_count: u32,
    snapshot_count: usize,
    state: &'static str,
    transitioning: &'static str,
    transitioning_message: &'a str,
    transitioning_progress: Option<u8>,
    created: String,
    #[serde(rename = "createdTS")]
    created_ts: i64,
    removed: Option<String>,
    remove_time: Option<String>,
    /// Scheduled snapshots and backups (null when none).
    schedule: Value,
    links: VolumeLinks<'a>,
    actions: ActionLinks<'a>,
}

/// `base` + `/v1/volumes/` + id + a tail, written straight into the
/// output when serialized: a list of 10,000 volumes carries ~90,000 of
/// these, and none of them is allocated on its own.
struct Url<'a> {
    base: &'a str,
    head: &'static str,
    id: &'a str,
    tail: &'a str,
}

impl serde::Serialize for Url<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}{}{}{}", self.base, self.head, self.id, self.tail))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeLinks<'a> {
    #[serde(rename = "self")]
    this: Url<'a>,
    snapshots: Url<'a>,
    backups: Url<'a>,
    storage_pool: Url<'a>,
}

/// The `actions` map: each valid action and its URL.
struct ActionLinks<'a> {
    base: &'a str,
    id: &'a str,
    actions: Vec<crate::core::Action>,
}

impl serde::Serialize for ActionLinks<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.actions.len()))?;
        for a in &self.actions {
            let url = format_args!("{}/v1/volumes/{}?action={}", self.base, self.id, a.name());
            map.serialize_entry(a.name(), &url)?;
        }
        map.end()
    }
}

pub fn volume<'a>(
    a: &'a Admin,
    base: &'a str,
    v: &'a Volume,
    ctx: &Context,
    id: &'a str,
) -> VolumeView<'a> {
    let url = |head, tail| Url { base, head, id, tail };
    VolumeView {
        id,
        ty: "volume",
        kind: "volume",
        uuid: a.ballast.uuid("volume", v.id),
        name: &v.name,
        description: &v.description,
        driver: &a.driver,
        driver_opts: &v.driver_opts,
        external_id: &v.name,
        uri: uri(a, v),
        is_host_path: v.host_path.is_some(),
        access_mode: access_mode(a, v),
        host_id: v.cluster.as_ref().map(|m| m.home.as_str()),
        holders: a.ballast.holders(v).into_iter().map(|h| h.node).collect(),
        lease_state: a.ballast.lease_state(v).as_str(),
        instance_id: v.mounts.keys().next().map(String::as_str),
        mount_ids: v.mounts.keys().map(String::as_str).collect(),
        image_id: None,
        storage_pool_id: &v.pool,
        size_bytes: v.size_bytes,
        used_bytes: v.used_bytes,
        mount_count: v.mount_count(),
        snapshot_count: ctx.snapshot_counts.get(&v.id).copied().unwrap_or(0),
        state: v.state.as_str(),
        transitioning: v.transitioning.as_str(),
        transitioning_message: &v.transitioning_message,
        transitioning_progress: progress(v.transitioning.as_str(), &v.transitioning_message),
        created: rfc3339_ms(v.created_ms),
        created_ts: v.created_ms,
        removed: v.removed_ms.map(rfc3339_ms),
        remove_time: remove_time(a, v).map(rfc3339_ms),
        schedule: v.schedule.describe(),
        links: VolumeLinks {
            this: url("/v1/volumes/", ""),
            snapshots: url("/v1/snapshots?volumeId=", ""),
            backups: url("/v1/backups?volumeId=", ""),
            storage_pool: Url { base, head: "/v1/storagepools/", id: &v.pool, tail: "" },
        },
        actions: ActionLinks { base, id, actions: a.ballast.actions(v, &ctx.offers) },
    }
}

fn uri(a: &Admin, v: &Volume) -> Option<String> {
    let pool = a.ballast.pools().find(|p| p.name() == v.pool);
    match (&v.host_path, pool, a.ballast.mountpoint(v)) {
        (Some(host), _, _) => Some(format!("file://{}", host.display())),
        (None, Some(p), Some(mp)) => {
            Some(format!("{}://{}", p.config.backend.as_str(), mp.display()))
        }
        _ => None,
    }
}

/// Rancher's `removeTime`: when a volume in the trash is to be purged
/// (its removal plus the trash retention); null outside the trash.
fn remove_time(a: &Admin, v: &Volume) -> Option<i64> {
    let retention = i64::try_from(a.ballast.trash_retention().as_millis()).unwrap_or(i64::MAX);
    v.removed_ms.filter(|_| v.state == VolState::Removed).map(|ms| ms.saturating_add(retention))
}

/// Rancher's `transitioningProgress`: the percent a running job's
/// message reports (`copying: 45% (…)`), or null when no job runs or it
/// tells no percent. Names in messages cannot hold a `%`, so the first
/// word that is a number and `%` is the job's.
pub fn progress(transitioning: &str, message: &str) -> Option<u8> {
    if transitioning != "yes" {
        return None;
    }
    message
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter_map(|w| w.strip_suffix('%'))
        .find_map(|n| n.parse::<u8>().ok().filter(|p| *p <= 100))
}

fn access_mode(a: &Admin, v: &Volume) -> &'static str {
    if v.cluster.is_some() || v.driver_opts.contains_key("access-mode") {
        return a.ballast.access_mode(v).as_str();
    }
    match a.ballast.pools().find(|p| p.name() == v.pool).map(|p| p.config.scope) {
        Some(Scope::Global) => "multiHostRW",
        _ => "singleHostRW",
    }
}

/// A volume as collections filter and sort it: each cell read from the
/// record, so that 10,000 volumes are never rendered to answer for 100.
pub struct VolumeRow<'a> {
    pub a: &'a Admin,
    pub ctx: &'a Context,
    pub v: &'a Volume,
}

impl Row for VolumeRow<'_> {
    fn id_key(&self) -> Cell<'_> {
        Cell::Int(self.v.id)
    }

    fn cell(&self, field: &str) -> Cell<'_> {
        let v = self.v;
        fn s(s: &str) -> Cell<'_> {
            Cell::Str(Cow::Borrowed(s))
        }
        let owned = |s: String| Cell::Str(Cow::Owned(s));
        let int = |n: u64| Cell::Int(i64::try_from(n).unwrap_or(i64::MAX));
        match field {
            "id" => owned(v.public_id()),
            "type" => Cell::Str(Cow::Borrowed("volume")),
            "name" | "externalId" => Cell::Str(Cow::Borrowed(&v.name)),
            "description" => s(&v.description),
            "driver" => Cell::Str(Cow::Borrowed(&self.a.driver)),
            "uri" => uri(self.a, v).map_or(Cell::Null, owned),
            "isHostPath" => Cell::Bool(v.host_path.is_some()),
            "accessMode" => s(access_mode(self.a, v)),
            "hostId" => v.cluster.as_ref().map_or(Cell::Null, |m| s(&m.home)),
            "leaseState" => s(self.a.ballast.lease_state(v).as_str()),
            "kind" => s("volume"),
            "uuid" => owned(self.a.ballast.uuid("volume", v.id)),
            "instanceId" => v.mounts.keys().next().map_or(Cell::Null, |k| s(k)),
            "mountIds" => Cell::List(v.mounts.keys().map(|k| Cow::Borrowed(k.as_str())).collect()),
            "storagePoolId" => s(&v.pool),
            "sizeBytes" => v.size_bytes.map_or(Cell::Null, int),
            "usedBytes" => int(v.used_bytes),
            "mountCount" => int(u64::from(v.mount_count())),
            "snapshotCount" => {
                int(self.ctx.snapshot_counts.get(&v.id).copied().unwrap_or(0) as u64)
            }
            "state" => s(v.state.as_str()),
            "transitioning" => s(v.transitioning.as_str()),
            "transitioningMessage" => s(&v.transitioning_message),
            "created" => owned(rfc3339_ms(v.created_ms)),
            "createdTS" => Cell::Int(v.created_ms),
            "removed" => v.removed_ms.map_or(Cell::Null, |ms| owned(rfc3339_ms(ms))),
            "removeTime" => remove_time(self.a, v).map_or(Cell::Null, |ms| owned(rfc3339_ms(ms))),
            "transitioningProgress" => progress(v.transitioning.as_str(), &v.transitioning_message)
                .map_or(Cell::Null, |p| Cell::Int(p.into())),
            _ => Cell::Null,
        }
    }
}

/// One volume as a JSON value.
pub fn volume_value(a: &Admin, base: &str, v: &Volume) -> Value {
    let id = v.public_id();
    serde_json::to_value(volume(a, base, v, &Context::new(a), &id)).unwrap_or(Value::Null)
}

/// A snapshot resource.
pub fn snapshot(a: &Admin, base: &str, s: &Snapshot) -> Value {
    snapshot_with(a, base, s, &a.ballast.holds())
}

/// A snapshot resource, with what its actions depend on gathered once
/// for many. `backup` is offered only where a target is configured:
/// without one it could never succeed.
pub fn snapshot_with(a: &Admin, base: &str, s: &Snapshot, holds: &Holds) -> Value {
    let id = s.public_id();
    let self_link = format!("{base}/v1/snapshots/{id}");
    let mut actions = Map::new();
    if s.state != SnapState::Removed && a.ballast.snapshot_removal(s, holds).is_none() {
        actions.insert("remove".into(), json!(format!("{self_link}?action=remove")));
    }
    if s.state == SnapState::Created && a.ballast.has_backup_target() {
        actions.insert("backup".into(), json!(format!("{self_link}?action=backup")));
    }
    let transitioning = match s.state {
        SnapState::Creating => "yes",
        SnapState::Error => "error",
        _ => "no",
    };
    json!({
        "id": id,
        "type": "snapshot",
        "kind": "snapshot",
        "uuid": a.ballast.uuid("snapshot", s.id),
        "name": s.name,
        "volumeId": Kind::Volume.id(s.volume_id),
        "state": s.state.as_str(),
        "transitioning": transitioning,
        "transitioningMessage": s.message,
        "transitioningProgress": progress(transitioning, &s.message),
        "removeTime": null,
        "sizeBytes": s.size_bytes,
        "created": rfc3339_ms(s.created_ms),
        "createdTS": s.created_ms,
        "links": {
            "self": self_link,
            "volume": format!("{base}/v1/volumes/{}", Kind::Volume.id(s.volume_id)),
            "backups": format!("{base}/v1/backups?snapshotId={id}"),
        },
        "actions": actions,
    })
}

/// A backup resource, with the actions its target allows.
pub fn backup_value(a: &Admin, base: &str, b: &Backup) -> Value {
    backup_with(a, base, b, &a.ballast.holds())
}

/// Why `action` of backup `b` cannot run now, if it cannot; `renamed`
/// says whether the call names the new volume (a restore into the
/// backed-up volume's name needs that name free).
pub fn backup_refusal(
    a: &Admin,
    b: &Backup,
    action: &str,
    holds: &Holds,
    renamed: bool,
) -> Option<String> {
    let id = b.public_id();
    if !a.ballast.has_target(&b.target) {
        return Some(format!(
            "backup {id} is in target {:?}, which is not configured: add its \
             [[backup_target]] back to the config to {action} it",
            b.target
        ));
    }
    let written = b.state == BackupState::Created && b.restic_id.is_some();
    match action {
        "remove" => a.ballast.backup_removal(b, holds).map(|e| e.to_string()),
        _ if !written => Some(format!("backup {id} is {}, not created", b.state.as_str())),
        "restore" if !renamed && a.ballast.get(&b.meta.volume_name).is_ok() => Some(format!(
            "the name {:?} is taken by a live volume; restore under another name (input `name`)",
            b.meta.volume_name
        )),
        _ => None,
    }
}

/// A backup resource, with what its actions depend on gathered once for
/// many: an action is listed when a call without input would run.
pub fn backup_with(a: &Admin, base: &str, b: &Backup, holds: &Holds) -> Value {
    let id = b.public_id();
    let self_link = format!("{base}/v1/backups/{id}");
    let mut actions = Map::new();
    for action in ["remove", "verify", "restore"] {
        if backup_refusal(a, b, action, holds, false).is_none() {
            actions.insert(action.into(), json!(format!("{self_link}?action={action}")));
        }
    }
    let uuid = a.ballast.uuid("backup", b.id);
    let mut links = Map::new();
    links.insert("self".into(), json!(self_link));
    links.insert("target".into(), json!(format!("{base}/v1/backuptargets/{}", b.target)));
    if let Some(v) = b.volume_id {
        links.insert("volume".into(), json!(format!("{base}/v1/volumes/{}", Kind::Volume.id(v))));
    }
    let transitioning = match b.state {
        BackupState::Creating => "yes",
        BackupState::Error => "error",
        _ => "no",
    };
    json!({
        "id": id,
        "type": "backup",
        "kind": "backup",
        "uuid": uuid,
        "name": b.name,
        "volumeId": b.volume_id.map(|v| Kind::Volume.id(v)),
        "volumeName": b.meta.volume_name,
        "sourceVolumeId": b.meta.volume_id,
        "sourceHost": b.meta.host,
        "snapshotId": b.snapshot_id.map(|s| Kind::Snapshot.id(s)),
        "backupTargetId": b.target,
        "resticId": b.restic_id,
        "uri": b.restic_id.as_ref().map(|r| format!("restic:{}#{r}", b.target)),
        "backend": b.meta.backend,
        "volumeSizeBytes": b.meta.size_bytes,
        "driverOpts": b.meta.driver_opts,
        "sizeBytes": b.size_bytes,
        "storedBytes": b.stored_bytes,
        "state": b.state.as_str(),
        "transitioning": transitioning,
        "transitioningMessage": b.message,
        "transitioningProgress": progress(transitioning, &b.message),
        "removeTime": null,
        "created": rfc3339_ms(b.created_ms),
        "createdTS": b.created_ms,
        "links": links,
        "actions": actions,
    })
}

#[cfg(test)]
mod tests {
    use super::progress;

    #[test]
    fn progress_is_the_percent_a_running_job_tells_and_null_otherwise() {
        assert_eq!(progress("yes", "copying: 45% (45 of 100 bytes)"), Some(45));
        assert_eq!(
            progress("yes", "reverting to snapshot 1s3 (db-1s3): 7% (7 of 99 bytes)"),
            Some(7)
        );
        assert_eq!(progress("yes", "12% (1.2 MiB of 10 MiB), 3 files, 1 MiB/s"), Some(12));
        assert_eq!(progress("yes", "copying: starting"), None);
        assert_eq!(progress("yes", "filling from 1v2: 250% off"), None, "not a percent done");
        assert_eq!(progress("no", "copying: 45%"), None, "no job runs");
        assert_eq!(progress("error", "failed at 45%"), None);
    }
}
