//! `/v1/snapshots`: list, show, remove, and the `backup` action.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::extract::{Body, Path, Query};
use super::resource::{self, SNAPSHOT_FIELDS};
use super::{Admin, ApiResult, parse_body, reply};
use crate::Error;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackupInput {
    backup_target_id: Option<String>,
}

pub async fn list(
    State(a): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let base = resource::base(&headers);
    let data = a.ballast.snapshots(None).iter().map(|s| resource::snapshot(&base, s)).collect();
    let data = resource::filter(data, &q, SNAPSHOT_FIELDS)?;
    Ok(reply(StatusCode::OK, resource::collection(&base, "snapshot", "snapshots", data)))
}

pub async fn show(State(a): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let s = a.ballast.find_snapshot(&id)?;
    Ok(reply(StatusCode::OK, resource::snapshot(&resource::base(&headers), &s)))
}

pub async fn remove(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let s = a.ballast.remove_snapshot(&id).await?;
    Ok(reply(StatusCode::OK, resource::snapshot(&resource::base(&headers), &s)))
}

pub async fn action(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Body(body): Body,
) -> ApiResult {
    match q.get("action").map(String::as_str) {
        Some("remove") => remove(State(a), headers, Path(id)).await,
        Some("backup") => {
            let input: BackupInput = parse_body(&body)?;
            let b =
                a.ballast.create_backup(None, Some(&id), input.backup_target_id.as_deref()).await?;
            Ok(reply(StatusCode::ACCEPTED, resource::backup(&resource::base(&headers), &b)))
        }
        Some(other) => Err(Error::InvalidInput(format!(
            "unknown snapshot action {other:?}; snapshot actions are: backup, remove"
        ))
        .into()),
        None => Err(Error::InvalidInput("POST on a snapshot needs ?action=NAME".into()).into()),
    }
}
