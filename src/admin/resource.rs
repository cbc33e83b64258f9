//! Rancher v1 resource shapes: a resource with `links` and `actions`, a
//! collection, and field filters over collections.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value, json};

use super::Admin;
use crate::config::Scope;
use crate::snapshot::{SnapState, Snapshot};
use crate::volume::{Volume, rfc3339_ms};
use crate::{Error, Result};

/// The URL prefix links are built on, from the request's Host header.
pub fn base(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// A volume resource (SPEC §4 fields, links, and the actions valid now).
pub fn volume(a: &Admin, base: &str, v: &Volume) -> Value {
    let id = v.public_id();
    let self_link = format!("{base}/v1/volumes/{id}");
    let pool = a.ballast.pools().find(|p| p.name() == v.pool);
    let mountpoint = a.ballast.mountpoint(v);
    let actions: Map<String, Value> = a
        .ballast
        .actions(v)
        .into_iter()
        .map(|act| (act.name().to_string(), json!(format!("{self_link}?action={}", act.name()))))
        .collect();
    json!({
        "id": id,
        "type": "volume",
        "name": v.name,
        "description": v.description,
        "driver": &*a.driver,
        "driverOpts": v.driver_opts,
        "externalId": v.name,
        "uri": match (pool, mountpoint) {
            (Some(p), Some(mp)) => Value::from(format!("{}://{}", p.config.backend.as_str(), mp.display())),
            _ => Value::Null,
        },
        "isHostPath": false,
        "accessMode": match pool.map(|p| p.config.scope) {
            Some(Scope::Global) => "multiHostRW",
            _ => "singleHostRW",
        },
        "instanceId": v.mounts.keys().collect::<Vec<_>>(),
        "imageId": null,
        "storagePoolId": v.pool,
        "sizeBytes": v.size_bytes,
        "usedBytes": v.used_bytes,
        "mountCount": v.mount_count(),
        "snapshotCount": a.ballast.snapshot_count(v.id),
        "state": v.state.as_str(),
        "transitioning": v.transitioning.as_str(),
        "transitioningMessage": v.transitioning_message,
        "created": rfc3339_ms(v.created_ms),
        "createdTS": v.created_ms,
        "removed": v.removed_ms.map(rfc3339_ms),
        "links": {
            "self": self_link,
            "snapshots": format!("{base}/v1/snapshots?volumeId={id}"),
            "backups": format!("{base}/v1/backups?volumeId={id}"),
            "storagePool": format!("{base}/v1/storagepools/{}", v.pool),
        },
        "actions": actions,
    })
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

/// A collection of resources of one type, after field filters.
pub fn collection(base: &str, kind: &str, path: &str, data: Vec<Value>) -> Value {
    json!({
        "type": "collection",
        "resourceType": kind,
        "links": { "self": format!("{base}/v1/{path}") },
        "data": data,
    })
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
