//! `/v1/volumes`: list, create, show, update, remove, and actions.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{Body, Path, Query};
use super::resource::{self, Context, VOLUME_FIELDS};
use super::{Admin, ApiResult, parse_body, reply};
use crate::Error;
use crate::core::Action;
use crate::schedule::Schedule;

pub async fn list(
    State(a): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let base = resource::base(&headers);
    // The trash is listed only when asked for: `?state=removed`.
    let volumes = match q.get("state").map(String::as_str) {
        Some("removed") => a.ballast.removed()?,
        _ => a.ballast.list(),
    };
    let ctx = Context::new(&a);
    let ids: Vec<String> = volumes.iter().map(|v| v.public_id()).collect();
    let views: Vec<_> =
        volumes.iter().zip(&ids).map(|(v, id)| resource::volume(&a, &base, v, &ctx, id)).collect();
    if q.is_empty() {
        return Ok(reply(StatusCode::OK, resource::collection(&base, "volume", "volumes", views)));
    }
    let data = views.into_iter().map(|v| serde_json::to_value(v).unwrap_or(Value::Null)).collect();
    let data = resource::filter(data, &q, VOLUME_FIELDS)?;
    Ok(reply(StatusCode::OK, resource::collection(&base, "volume", "volumes", data)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    description: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    #[serde(default = "yes")]
    allocate: bool,
}

fn yes() -> bool {
    true
}

pub async fn create(State(a): State<Admin>, headers: HeaderMap, Body(body): Body) -> ApiResult {
    let req: CreateBody = parse_body(&body)?;
    if let Some(driver) = &req.driver
        && driver.as_str() != &*a.driver
    {
        return Err(Error::InvalidInput(format!(
            "driver {driver:?}: this endpoint creates volumes of driver {:?} only",
            a.driver
        ))
        .into());
    }
    let v = a
        .ballast
        .create_volume(
            &req.name,
            req.driver_opts.unwrap_or_default(),
            req.allocate,
            req.description,
        )
        .await?;
    Ok(reply(StatusCode::CREATED, resource::volume_value(&a, &resource::base(&headers), &v)))
}

pub async fn show(State(a): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let v = a.ballast.find(&id)?;
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &resource::base(&headers), &v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    description: Option<String>,
    schedule: Option<ScheduleBody>,
}

/// A whole schedule; a setting left out (or null, or "") is unset.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScheduleBody {
    snapshot_every: Option<String>,
    snapshot_keep: Option<u32>,
    backup_every: Option<String>,
    backup_keep: Option<u32>,
    backup_target: Option<String>,
}

pub async fn update(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let req: UpdateBody = parse_body(&body).map_err(|e| {
        Error::InvalidInput(format!("only `description` and `schedule` can be updated: {e}"))
    })?;
    if req.description.is_none() && req.schedule.is_none() {
        return Err(Error::InvalidInput(
            "nothing to update: give `description` or `schedule`".into(),
        )
        .into());
    }
    let mut v = a.ballast.find(&id)?;
    if let Some(s) = req.schedule {
        let keep = |n: Option<u32>| n.map(|n| n.to_string());
        let (snapshot_keep, backup_keep) = (keep(s.snapshot_keep), keep(s.backup_keep));
        let schedule = Schedule::parse(
            s.snapshot_every.as_deref(),
            snapshot_keep.as_deref(),
            s.backup_every.as_deref(),
            backup_keep.as_deref(),
            s.backup_target.as_deref(),
        )?;
        v = a.ballast.set_schedule(&id, schedule).await?;
    }
    if let Some(description) = req.description {
        v = a.ballast.set_description(&id, description).await?;
    }
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &resource::base(&headers), &v)))
}

pub async fn remove(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let v = a.ballast.remove_volume(&id).await?;
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &resource::base(&headers), &v)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActionInput {
    name: Option<String>,
    snapshot_id: Option<String>,
    backup_id: Option<String>,
    #[serde(default)]
    force: bool,
}

pub async fn action(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Body(body): Body,
) -> ApiResult {
    let base = resource::base(&headers);
    let Some(name) = q.get("action") else {
        return Err(Error::InvalidInput("POST on a volume needs ?action=NAME".into()).into());
    };
    let action = Action::parse(name)?;
    let input: ActionInput = parse_body(&body)?;
    let b = &a.ballast;
    let v = match action {
        Action::Allocate => b.allocate(&id).await?,
        Action::Activate => b.activate(&id).await?,
        Action::Deactivate => b.deactivate(&id).await?,
        Action::Deallocate => b.deallocate(&id, input.force).await?,
        Action::Snapshot => {
            let s = b.snapshot(&id, input.name).await?;
            return Ok(reply(StatusCode::ACCEPTED, resource::snapshot(&base, &s)));
        }
        Action::RevertToSnapshot => {
            let snap = required(input.snapshot_id, "snapshotId", action)?;
            let v = b.revert(&id, &snap).await?;
            return Ok(reply(StatusCode::ACCEPTED, resource::volume_value(&a, &base, &v)));
        }
        Action::RestoreFromBackup => {
            let backup = required(input.backup_id, "backupId", action)?;
            let v = b.restore_from_backup(&id, &backup).await?;
            return Ok(reply(StatusCode::ACCEPTED, resource::volume_value(&a, &base, &v)));
        }
        Action::Remove => b.remove_volume(&id).await?,
        Action::Restore => b.restore(&id, input.name).await?,
        Action::Purge => b.purge(&id).await?,
    };
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &base, &v)))
}

fn required(value: Option<String>, field: &str, action: Action) -> Result<String, Error> {
    value.ok_or_else(|| {
        Error::InvalidInput(format!("action {} needs the input field {field:?}", action.name()))
    })
}
