//! `/v1/backups` and `/v1/backuptargets`: take, list, show, verify,
//! restore into a new volume, remove; list targets and sync one (import
//! the backups other hosts wrote to it).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Body, Pairs, Path};
use super::schema::Mode;
use super::schema::types::{BACKUP, BACKUP_RESTORE_INPUT, BACKUP_TARGET};
use super::urls::Base;
use super::{Admin, ApiError, ApiResult, accept, action_of, query, reply, resource};
use crate::Error;
use crate::config::BackupTarget;
use crate::core::IfTaken;

pub async fn list(State(a): State<Admin>, Base(base): Base, Pairs(pairs): Pairs) -> ApiResult {
    let holds = a.ballast.holds();
    let backups = a.ballast.backups(None);
    let data = backups.iter().map(|b| resource::backup_with(&a, &base, b, &holds)).collect();
    Ok(reply(StatusCode::OK, query::of_values(&base, &BACKUP, &pairs, data)?))
}

pub async fn show(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    let b = a.ballast.find_backup(&id)?;
    Ok(reply(StatusCode::OK, resource::backup_value(&a, &base, &b)))
}

pub async fn remove(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    let b = a.ballast.remove_backup(&id).await?;
    Ok(reply(StatusCode::OK, resource::backup_value(&a, &base, &b)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    volume_id: Option<String>,
    snapshot_id: Option<String>,
    backup_target_id: Option<String>,
}

/// A backup target named in a request must exist.
pub(super) fn check_target(a: &Admin, target: Option<&str>) -> Result<(), ApiError> {
    match target {
        Some(t) if !a.ballast.backup_targets().iter().any(|x| x.name == t) => {
            let all: Vec<String> = a.ballast.backup_targets().into_iter().map(|t| t.name).collect();
            Err(ApiError::field(
                "InvalidReference",
                "backupTargetId",
                format!("no backup target {t:?}; configured targets: {}", all.join(", ")),
            ))
        }
        _ => Ok(()),
    }
}

/// POST /v1/backups: back up a volume (from a new snapshot) or a snapshot.
pub async fn create(State(a): State<Admin>, Base(base): Base, Body(body): Body) -> ApiResult {
    let input: CreateInput = accept(&a, &BACKUP, &body, Mode::Create)?;
    let volume = match &input.volume_id {
        Some(v) => Some(a.ballast.find(v).map_err(|e| ApiError::from(e).as_reference("volumeId"))?),
        None => None,
    };
    if let Some(s) = &input.snapshot_id {
        match &volume {
            Some(v) => a.ballast.find_snapshot_of(v.id, s),
            None => a.ballast.find_snapshot(s),
        }
        .map_err(|e| ApiError::from(e).as_reference("snapshotId"))?;
    }
    if input.volume_id.is_none() && input.snapshot_id.is_none() {
        return Err(ApiError::field(
            "MissingRequired",
            "volumeId",
            "a backup needs `volumeId` (backs up a new snapshot of it) or `snapshotId`",
        ));
    }
    check_target(&a, input.backup_target_id.as_deref())?;
    let b = a
        .ballast
        .create_backup(
            input.volume_id.as_deref(),
            input.snapshot_id.as_deref(),
            input.backup_target_id.as_deref(),
        )
        .await?;
    Ok(reply(StatusCode::ACCEPTED, resource::backup_value(&a, &base, &b)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RestoreInput {
    name: Option<String>,
    storage_pool_id: Option<String>,
}

/// POST /v1/backups/{id}?action=verify|restore|remove.
pub async fn action(
    State(a): State<Admin>,
    Base(base): Base,
    Path(id): Path<String>,
    Pairs(pairs): Pairs,
    Body(body): Body,
) -> ApiResult {
    let action = action_of(&BACKUP, &pairs)?.name;
    let found = a.ballast.find_backup(&id)?;
    let input: RestoreInput = match action {
        "restore" => accept(&a, &BACKUP_RESTORE_INPUT, &body, Mode::Input)?,
        _ => RestoreInput::default(),
    };
    // Without input, exactly what the `actions` map lists; a restore
    // that names the new volume may run when the old name is taken.
    let renamed = input.name.is_some();
    if let Some(why) = resource::backup_refusal(&a, &found, action, &a.ballast.holds(), renamed) {
        return Err(super::not_available(action, why));
    }
    match action {
        "verify" => {
            let b = a.ballast.verify_backup(&id).await?;
            Ok(reply(StatusCode::OK, resource::backup_value(&a, &base, &b)))
        }
        "restore" => {
            if let Some(p) = &input.storage_pool_id
                && !a.ballast.pools().any(|x| x.name() == p)
            {
                return Err(ApiError::field(
                    "InvalidReference",
                    "storagePoolId",
                    format!("no storage pool {p:?}"),
                ));
            }
            let b = a.ballast.restorable(&id)?;
            let name = input.name.unwrap_or_else(|| b.meta.volume_name.clone());
            let mut opts = BTreeMap::from([("from-backup".to_string(), b.public_id())]);
            if let Some(pool) = input.storage_pool_id {
                opts.insert("pool".into(), pool);
            }
            // A new volume, like a POST to /v1/volumes: a name taken is refused.
            let v = a.ballast.create_volume(&name, opts, true, None, IfTaken::Refuse).await?;
            Ok(reply(StatusCode::ACCEPTED, resource::volume_value(&a, &base, &v)))
        }
        _ => remove(State(a), Base(base), Path(id)).await,
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
        "imported": null,
        "actions": { "sync": format!("{self_link}?action=sync") },
    })
}

pub async fn targets(State(a): State<Admin>, Base(base): Base, Pairs(pairs): Pairs) -> ApiResult {
    let data = a.ballast.backup_targets().iter().map(|t| target(&base, t)).collect();
    Ok(reply(StatusCode::OK, query::of_values(&base, &BACKUP_TARGET, &pairs, data)?))
}

fn find_target(a: &Admin, id: &str) -> Result<BackupTarget, Error> {
    a.ballast
        .backup_targets()
        .into_iter()
        .find(|t| t.name == id)
        .ok_or_else(|| Error::NotFound(format!("no backup target {id:?}")))
}

pub async fn show_target(
    State(a): State<Admin>,
    Base(base): Base,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(reply(StatusCode::OK, target(&base, &find_target(&a, &id)?)))
}

/// POST /v1/backuptargets/{id}?action=sync: reads the repository and
/// lists the backups it holds that this host did not know.
pub async fn target_action(
    State(a): State<Admin>,
    Base(base): Base,
    Path(id): Path<String>,
    Pairs(pairs): Pairs,
) -> ApiResult {
    action_of(&BACKUP_TARGET, &pairs)?;
    let t = find_target(&a, &id)?;
    let imported = a.ballast.sync_backups(&id).await?;
    let mut value: Value = target(&base, &t);
    value["imported"] = json!(imported);
    Ok(reply(StatusCode::OK, value))
}
