//! `/v1/snapshots`: list, show, remove, and the `backup` action.

use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{Body, Pairs, Path};
use super::schema::Mode;
use super::schema::types::{SNAPSHOT, SNAPSHOT_BACKUP_INPUT};
use super::urls::Base;
use super::{Admin, ApiResult, accept, action_of, not_available, query, reply, resource};

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BackupInput {
    backup_target_id: Option<String>,
}

pub async fn list(State(a): State<Admin>, Base(base): Base, Pairs(pairs): Pairs) -> ApiResult {
    let holds = a.ballast.holds();
    let snapshots = a.ballast.snapshots(None);
    let data = snapshots.iter().map(|s| resource::snapshot_with(&a, &base, s, &holds)).collect();
    Ok(reply(StatusCode::OK, query::of_values(&base, &SNAPSHOT, &pairs, data)?))
}

pub async fn show(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    let s = a.ballast.find_snapshot(&id)?;
    Ok(reply(StatusCode::OK, resource::snapshot(&a, &base, &s)))
}

pub async fn remove(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    let s = a.ballast.remove_snapshot(&id).await?;
    Ok(reply(StatusCode::OK, resource::snapshot(&a, &base, &s)))
}

pub async fn action(
    State(a): State<Admin>,
    Base(base): Base,
    Path(id): Path<String>,
    Pairs(pairs): Pairs,
    Body(body): Body,
) -> ApiResult {
    let action = action_of(&SNAPSHOT, &pairs)?.name;
    let s = a.ballast.find_snapshot(&id)?;
    if action == "backup" {
        // Not listed without a target: say so, and how to add one.
        a.ballast.require_backup_target().map_err(|e| not_available(action, e.to_string()))?;
    }
    if action == "remove"
        && let Some(e) = a.ballast.snapshot_removal(&s, &a.ballast.holds())
    {
        return Err(not_available(action, e.to_string()));
    }
    super::require_listed(&resource::snapshot(&a, &base, &s), action)?;
    match action {
        "backup" => {
            let input: BackupInput = accept(&a, &SNAPSHOT_BACKUP_INPUT, &body, Mode::Input)?;
            let target = input.backup_target_id;
            super::backups::check_target(&a, target.as_deref())?;
            let b = a.ballast.create_backup(None, Some(&id), target.as_deref()).await?;
            Ok(reply(StatusCode::ACCEPTED, resource::backup_value(&a, &base, &b)))
        }
        _ => remove(State(a), Base(base), Path(id)).await,
    }
}
