//! Rancher v1 resource shapes: a resource with `links` and `actions`, a
//! collection, and field filters over collections.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::http::{HeaderMap, header};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::Admin;
use crate::backup::{Backup, BackupState};
use crate::pool::Scope;
use crate::snapshot::{SnapState, Snapshot};
use crate::volume::{Volume, rfc3339_ms};
use crate::{Error, Result};

/// The URL prefix links are built on, from the request's Host header.
pub fn base(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// What rendering volumes needs from the snapshots, gathered once per
/// request rather than once per volume.
pub struct Context {
    snapshot_counts: HashMap<i64, usize>,
    snapshotting: HashSet<i64>,
}

impl Context {
    pub fn new(a: &Admin) -> Context {
        let (snapshot_counts, snapshotting) = a.ballast.snapshot_summary();
        Context { snapshot_counts, snapshotting }
    }
}

/// A volume resource (SPEC §4 fields, links, and the actions valid now).
/// Typed rather than a `Value`: a list of 10,000 is serialized straight
/// from these.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeView<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    description: &'a str,
    driver: &'a str,
    driver_opts: &'a BTreeMap<String, String>,
    external_id: &'a str,
    uri: Option<String>,
    is_host_path: bool,
    access_mode: &'static str,
    /// The mount IDs of the containers using it.
    instance_id: Vec<&'a str>,
    image_id: Option<&'a str>,
    storage_pool_id: &'a str,
    size_bytes: Option<u64>,
    used_bytes: u64,
    mount_count: u32,
    snapshot_count: usize,
    state: &'static str,
    transitioning: &'static str,
    transitioning_message: &'a str,
    created: String,
    #[serde(rename = "createdTS")]
    created_ts: i64,
    removed: Option<String>,
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
            let url = Url { base: self.base, head: "/v1/volumes/", id: self.id, tail: a.query() };
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
    let pool = a.ballast.pools().find(|p| p.name() == v.pool);
    let url = |head, tail| Url { base, head, id, tail };
    VolumeView {
        id,
        kind: "volume",
        name: &v.name,
        description: &v.description,
        driver: &a.driver,
        driver_opts: &v.driver_opts,
        external_id: &v.name,
        uri: match (&v.host_path, pool, a.ballast.mountpoint(v)) {
            (Some(host), _, _) => Some(format!("file://{}", host.display())),
            (None, Some(p), Some(mp)) => {
                Some(format!("{}://{}", p.config.backend.as_str(), mp.display()))
            }
            _ => None,
        },
        is_host_path: v.host_path.is_some(),
        access_mode: match pool.map(|p| p.config.scope) {
            Some(Scope::Global) => "multiHostRW",
            _ => "singleHostRW",
        },
        instance_id: v.mounts.keys().map(String::as_str).collect(),
        image_id: None,
        storage_pool_id: &v.pool,
        size_bytes: v.size_bytes,
        used_bytes: v.used_bytes,
        mount_count: v.mount_count(),
        snapshot_count: ctx.snapshot_counts.get(&v.id).copied().unwrap_or(0),
        state: v.state.as_str(),
        transitioning: v.transitioning.as_str(),
        transitioning_message: &v.transitioning_message,
        created: rfc3339_ms(v.created_ms),
        created_ts: v.created_ms,
        removed: v.removed_ms.map(rfc3339_ms),
        schedule: v.schedule.describe(),
        links: VolumeLinks {
            this: url("/v1/volumes/", ""),
            snapshots: url("/v1/snapshots?volumeId=", ""),
            backups: url("/v1/backups?volumeId=", ""),
            storage_pool: Url { base, head: "/v1/storagepools/", id: &v.pool, tail: "" },
        },
        actions: ActionLinks {
            base,
            id,
            actions: a.ballast.actions(v, ctx.snapshotting.contains(&v.id)),
        },
    }
}

/// One volume as a JSON value.
pub fn volume_value(a: &Admin, base: &str, v: &Volume) -> Value {
    let id = v.public_id();
    serde_json::to_value(volume(a, base, v, &Context::new(a), &id)).unwrap_or(Value::Null)
}

/// A snapshot resource.
pub fn snapshot(base: &str, s: &Snapshot) -> Value {
    let id = s.public_id();
    let self_link = format!("{base}/v1/snapshots/{id}");
    let mut actions = Map::new();
    if matches!(s.state, SnapState::Created | SnapState::Error) {
        actions.insert("remove".into(), json!(format!("{self_link}?action=remove")));
    }
    json!({
        "id": id,
        "type": "snapshot",
        "name": s.name,
        "volumeId": format!("1v{}", s.volume_id),
        "state": s.state.as_str(),
        "transitioning": match s.state {
            SnapState::Creating => "yes",
            SnapState::Error => "error",
            _ => "no",
        },
        "transitioningMessage": s.message,
        "sizeBytes": s.size_bytes,
        "created": rfc3339_ms(s.created_ms),
        "createdTS": s.created_ms,
        "links": {
            "self": self_link,
            "volume": format!("{base}/v1/volumes/1v{}", s.volume_id),
            "backups": format!("{base}/v1/backups?snapshotId={id}"),
        },
        "actions": actions,
    })
}

pub fn backup(base: &str, b: &Backup) -> Value {
    let id = b.public_id();
    let self_link = format!("{base}/v1/backups/{id}");
    let mut actions = Map::new();
    if b.state != BackupState::Creating {
        actions.insert("remove".into(), json!(format!("{self_link}?action=remove")));
    }
    if b.state == BackupState::Created {
        for action in ["verify", "restore"] {
            actions.insert(action.into(), json!(format!("{self_link}?action={action}")));
        }
    }
    let mut links = Map::new();
    links.insert("self".into(), json!(self_link));
    links.insert("target".into(), json!(format!("{base}/v1/backuptargets/{}", b.target)));
    if let Some(v) = b.volume_id {
        links.insert("volume".into(), json!(format!("{base}/v1/volumes/1v{v}")));
    }
    json!({
        "id": id,
        "type": "backup",
        "name": b.name,
        "volumeId": b.volume_id.map(|v| format!("1v{v}")),
        "volumeName": b.meta.volume_name,
        "sourceVolumeId": b.meta.volume_id,
        "sourceHost": b.meta.host,
        "snapshotId": b.snapshot_id.map(|s| format!("1s{s}")),
        "backupTargetId": b.target,
        "resticId": b.restic_id,
        "uri": b.restic_id.as_ref().map(|r| format!("restic:{}#{r}", b.target)),
        "backend": b.meta.backend,
        "volumeSizeBytes": b.meta.size_bytes,
        "driverOpts": b.meta.driver_opts,
        "sizeBytes": b.size_bytes,
        "storedBytes": b.stored_bytes,
        "state": b.state.as_str(),
        "transitioning": match b.state {
            BackupState::Creating => "yes",
            BackupState::Error => "error",
            _ => "no",
        },
        "transitioningMessage": b.message,
        "created": rfc3339_ms(b.created_ms),
        "createdTS": b.created_ms,
        "links": links,
        "actions": actions,
    })
}

/// A collection of resources of one type.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Collection<T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    resource_type: &'static str,
    links: BTreeMap<&'static str, String>,
    data: Vec<T>,
}

pub fn collection<T: Serialize>(
    base: &str,
    kind: &'static str,
    path: &str,
    data: Vec<T>,
) -> Collection<T> {
    Collection {
        kind: "collection",
        resource_type: kind,
        links: BTreeMap::from([("self", format!("{base}/v1/{path}"))]),
        data,
    }
}

/// Keeps the resources whose fields match every filter (`?name=db`).
/// Strings compare as they are, other values by their JSON text; a list
/// matches when it contains the value. An unknown field is an error, so a
/// typo never silently matches everything or nothing.
pub fn filter(
    data: Vec<Value>,
    filters: &HashMap<String, String>,
    fields: &[&str],
) -> Result<Vec<Value>> {
    for key in filters.keys() {
        if !fields.contains(&key.as_str()) {
            return Err(Error::InvalidInput(format!(
                "unknown filter field {key:?}; filterable fields: {}",
                fields.join(", ")
            )));
        }
    }
    Ok(data
        .into_iter()
        .filter(|r| filters.iter().all(|(k, want)| matches(&r[k.as_str()], want)))
        .collect())
}

fn matches(field: &Value, want: &str) -> bool {
    match field {
        Value::String(s) => s == want,
        Value::Array(items) => items.iter().any(|i| matches(i, want)),
        other => {
            let text = other.to_string();
            text == want
        }
    }
}

/// The filterable fields of a volume.
pub const VOLUME_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "driver",
    "externalId",
    "isHostPath",
    "accessMode",
    "instanceId",
    "storagePoolId",
    "state",
    "transitioning",
];

pub const SNAPSHOT_FIELDS: &[&str] = &["id", "name", "volumeId", "state"];

pub const BACKUP_FIELDS: &[&str] =
    &["id", "name", "volumeId", "volumeName", "snapshotId", "backupTargetId", "state"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_strings_bools_and_lists() {
        let data = vec![
            json!({ "name": "a", "state": "active", "isHostPath": false, "instanceId": ["c1", "c2"] }),
            json!({ "name": "b", "state": "inactive", "isHostPath": true, "instanceId": [] }),
        ];
        let f = |pairs: &[(&str, &str)]| {
            let filters = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            filter(data.clone(), &filters, VOLUME_FIELDS).map(|d| d.len())
        };
        assert_eq!(f(&[]).unwrap(), 2);
        assert_eq!(f(&[("state", "active")]).unwrap(), 1);
        assert_eq!(f(&[("isHostPath", "true")]).unwrap(), 1);
        assert_eq!(f(&[("instanceId", "c2")]).unwrap(), 1);
        assert_eq!(f(&[("name", "a"), ("state", "inactive")]).unwrap(), 0);
        let err = f(&[("colour", "x")]).unwrap_err().to_string();
        assert!(err.contains("unknown filter field \"colour\""), "{err}");
    }
}
