//! `/v1/backups` and `/v1/backuptargets`: take, list, show, verify,
//! restore into a new volume, remove; list targets and sync one (import
//! the backups other hosts wrote to it).

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Body, Path, Query};
use super::resource::{self, BACKUP_FIELDS};
use super::{Admin, ApiResult, parse_body, reply};
use crate::Error;
use crate::config::BackupTarget;

pub async fn list(
    State(a): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let base = resource::base(&headers);
    let data = a.ballast.backups(None).iter().map(|b| resource::backup(&base, b)).collect();
    let data = resource::filter(data, &q, BACKUP_FIELDS)?;
    Ok(reply(StatusCode::OK, resource::collection(&base, "backup", "backups", data)))
}

pub async fn show(State(a): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let b = a.ballast.find_backup(&id)?;
    Ok(reply(StatusCode::OK, resource::backup(&resource::base(&headers), &b)))
}

pub async fn remove(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let b = a.ballast.remove_backup(&id).await?;
    Ok(reply(StatusCode::OK, resource::backup(&resource::base(&headers), &b)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateInput {
    volume_id: Option<String>,
    snapshot_id: Option<String>,
    backup_target_id: Option<String>,
}

/// POST /v1/backups: back up a volume (from a new snapshot) or a snapshot.
pub async fn create(State(a): State<Admin>, headers: HeaderMap, Body(body): Body) -> ApiResult {
    let input: CreateInput = parse_body(&body)?;
    let b = a
        .ballast
        .create_backup(
            input.volume_id.as_deref(),
            input.snapshot_id.as_deref(),
            input.backup_target_id.as_deref(),
        )
        .await?;
    Ok(reply(StatusCode::ACCEPTED, resource::backup(&resource::base(&headers), &b)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RestoreInput {
    name: Option<String>,
    storage_pool_id: Option<String>,
}

/// POST /v1/backups/{id}?action=verify|restore|remove.
pub async fn action(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Body(body): Body,
) -> ApiResult {
    let base = resource::base(&headers);
    match q.get("action").map(String::as_str) {
        Some("remove") => remove(State(a), headers, Path(id)).await,
        Some("verify") => {
            let b = a.ballast.verify_backup(&id).await?;
            Ok(reply(StatusCode::OK, resource::backup(&base, &b)))
        }
        Some("restore") => {
            let input: RestoreInput = parse_body(&body)?;
            let b = a.ballast.restorable(&id)?;
            let name = input.name.unwrap_or_else(|| b.meta.volume_name.clone());
            let mut opts = BTreeMap::from([("from-backup".to_string(), b.public_id())]);
            if let Some(pool) = input.storage_pool_id {
                opts.insert("pool".into(), pool);
            }
            let v = a.ballast.create_volume(&name, opts, true, None).await?;
            Ok(reply(StatusCode::ACCEPTED, resource::volume_value(&a, &base, &v)))
        }
        Some(other) => Err(Error::InvalidInput(format!(
            "unknown backup action {other:?}; backup actions are: verify, restore, remove"
        ))
        .into()),
        None => Err(Error::InvalidInput("POST on a backup needs ?action=NAME".into()).into()),
    }
}

fn target(base: &str, t: &BackupTarget) -> Value {
    let self_link = format!("{base}/v1/backuptargets/{}", t.name);
    json!({
        "id": t.name,
        "type": "backupTarget",
        "name": t.name,
        "url": t.url,
        "endpoint": t.endpoint,
        "region": t.region,
        "keepLast": t.keep_last,
        "keepDaily": t.keep_daily,
        "keepWeekly": t.keep_weekly,
        "links": {
            "self": self_link,
            "backups": format!("{base}/v1/backups?backupTargetId={}", t.name),
        },
        "actions": { "sync": format!("{self_link}?action=sync") },
    })
}

pub async fn targets(State(a): State<Admin>, headers: HeaderMap) -> ApiResult {
    let base = resource::base(&headers);
    let data = a.ballast.backup_targets().iter().map(|t| target(&base, t)).collect();
    Ok(reply(StatusCode::OK, resource::collection(&base, "backupTarget", "backuptargets", data)))
}

pub async fn show_target(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let t = a
        .ballast
        .backup_targets()
        .into_iter()
        .find(|t| t.name == id)
        .ok_or_else(|| Error::NotFound(format!("no backup target {id:?}")))?;
    Ok(reply(StatusCode::OK, target(&resource::base(&headers), &t)))
}

/// POST /v1/backuptargets/{id}?action=sync: reads the repository and
/// lists the backups it holds that this host did not know.
pub async fn target_action(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    match q.get("action").map(String::as_str) {
        Some("sync") => {
            let imported = a.ballast.sync_backups(&id).await?;
            let base = resource::base(&headers);
            let t = a.ballast.backup_targets().into_iter().find(|t| t.name == id);
            let mut value = t.map(|t| target(&base, &t)).unwrap_or(Value::Null);
            value["imported"] = json!(imported);
            Ok(reply(StatusCode::OK, value))
        }
        Some(other) => Err(Error::InvalidInput(format!(
            "unknown backup target action {other:?}; backup target actions are: sync"
        ))
        .into()),
        None => {
            Err(Error::InvalidInput("POST on a backup target needs ?action=sync".into()).into())
        }
    }
}
