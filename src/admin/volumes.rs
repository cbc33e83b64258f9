//! `/v1/volumes`: list, create, show, update, remove, and actions.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::extract::{Body, Pairs, Path};
use super::query::{self, Query};
use super::resource::{self, Context, VolumeRow};
use super::schema::{self, Mode};
use super::urls::Base;
use super::{Admin, ApiError, ApiResult, accept, accept_json, body_json, reply};
use crate::core::{Action, Given, IfTaken};
use crate::schedule::Schedule;
use crate::volume::{State as VolState, Volume};

/// Refuses an action that cannot run now with the input given (without
/// input: one absent from the volume's `actions` map), in the core's
/// words.
fn require_available(a: &Admin, v: &Volume, action: Action, given: Given) -> Result<(), ApiError> {
    a.ballast
        .available(action, v, given)
        .map_err(|e| super::not_available(action.name(), e.to_string()).in_use_of(&e))
}

pub async fn list(State(a): State<Admin>, Base(base): Base, Pairs(pairs): Pairs) -> ApiResult {
    // Filtering and sorting 10,000 rows is CPU work: off the runtime's
    // threads, so that Docker's calls never wait behind it.
    tokio::task::spawn_blocking(move || list_now(&a, &base, &pairs))
        .await
        .map_err(|e| ApiError::from(crate::Error::internal("listing volumes", e)))?
}

fn list_now(a: &Admin, base: &str, pairs: &[(String, String)]) -> ApiResult {
    let q = Query::parse(&schema::types::VOLUME, pairs, &a.driver)?;
    // The trash and the tombstones are listed only to a query about
    // them: `state=removed`, `removed_notnull`, `state_ne=active`…
    let mut volumes = a.ballast.list();
    if q.filters_on("state") || q.filters_on("removed") {
        volumes.extend(a.ballast.removed_and_purged()?);
    }
    let ctx = Context::new(a);
    let rows = volumes.iter().map(|v| VolumeRow { a, ctx: &ctx, v }).collect();
    let page = q.page(rows)?;
    let ids: Vec<String> = page.rows.iter().map(|r| r.v.public_id()).collect();
    let views: Vec<_> = page
        .rows
        .iter()
        .zip(&ids)
        .map(|(r, id)| resource::volume(a, base, r.v, &ctx, id))
        .collect();
    Ok(reply(StatusCode::OK, query::collection(base, &q, &page, views)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    name: String,
    description: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    allocate: bool,
}

pub async fn create(State(a): State<Admin>, Base(base): Base, Body(body): Body) -> ApiResult {
    let req: CreateBody = accept(&a, &schema::types::VOLUME, &body, Mode::Create)?;
    // Docker's Create of an existing volume succeeds (it is how Docker
    // asks); a create through this API of a name taken is a mistake, which
    // the core tells under the name's lock, where two at once cannot both
    // pass.
    let v = a
        .ballast
        .create_volume(
            &req.name,
            req.driver_opts.unwrap_or_default(),
            req.allocate,
            req.description,
            IfTaken::Refuse,
        )
        .await
        // The schema has checked the name and the driver: what the core
        // still refuses is in the driverOpts.
        .map_err(|e| {
            let e = ApiError::from(e);
            let field = if e.code == "NotUnique" { "name" } else { "driverOpts" };
            e.on_field(field)
        })?;
    let value = resource::volume_value(&a, &base, &v);
    let location = value["links"]["self"].as_str().unwrap_or_default().to_string();
    let mut resp = reply(StatusCode::CREATED, value);
    if let Ok(l) = location.parse() {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    Ok(resp.into_response())
}

pub async fn show(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    let v = a.ballast.find(&id)?;
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &base, &v)))
}

/// The updatable fields; `schedule: null` clears the schedule.
#[derive(Deserialize)]
struct UpdateBody {
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    schedule: Option<Option<ScheduleBody>>,
}

/// Tells a field sent as null (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A whole schedule; a setting left out (or null, or "") is unset.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ScheduleBody {
    snapshot_every: Option<String>,
    snapshot_keep: Option<u32>,
    backup_every: Option<String>,
    backup_keep: Option<u32>,
    backup_target: Option<String>,
}

/// PUT: the fields the schema calls updatable, from a body that may be
/// the whole resource as fetched; everything else in it is ignored.
pub async fn update(
    State(a): State<Admin>,
    Base(base): Base,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let mut v = a.ballast.find(&id)?;
    let body = body_json(&body, &schema::types::VOLUME)?;
    let req: UpdateBody = accept_json(&a, &schema::types::VOLUME, &body, Mode::Update)?;
    // The whole resource may come back, but not another one's.
    if let Some(given) = body.get("id").and_then(|i| i.as_str())
        && given != v.public_id()
    {
        return Err(ApiError::field(
            "InvalidFormat",
            "id",
            format!("the body is resource {given:?}, not {}", v.public_id()),
        ));
    }
    if v.state == VolState::Purged {
        return Err(super::not_available(
            "update",
            format!("volume {} is purged: its record is a tombstone", v.public_id()),
        ));
    }
    if let Some(s) = req.schedule {
        let s = s.unwrap_or_default();
        let keep = |n: Option<u32>| n.map(|n| n.to_string());
        let (snapshot_keep, backup_keep) = (keep(s.snapshot_keep), keep(s.backup_keep));
        let schedule = Schedule::parse(
            s.snapshot_every.as_deref(),
            snapshot_keep.as_deref(),
            s.backup_every.as_deref(),
            backup_keep.as_deref(),
            s.backup_target.as_deref(),
        )
        .map_err(|e| ApiError::from(e).on_field("schedule"))?;
        if let Some(t) = &s.backup_target {
            super::backups::check_target(&a, Some(t))
                .map_err(|e| ApiError { field: Some("schedule.backupTarget".into()), ..e })?;
        }
        if !schedule.same_settings(&v.schedule) {
            v = a.ballast.set_schedule(&id, schedule).await?;
        }
    }
    if let Some(description) = req.description
        && description != v.description
    {
        v = a.ballast.set_description(&id, description).await?;
    }
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &base, &v)))
}

pub async fn remove(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    require_available(&a, &*a.ballast.find(&id)?, Action::Remove, Given::default())?;
    let v = a.ballast.remove_volume(&id).await?;
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &base, &v)))
}

/// Every volume action's input fields (each action's schema allows its
/// own; the others are dropped before this is filled).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ActionInput {
    name: Option<String>,
    snapshot_id: Option<String>,
    backup_id: Option<String>,
    #[serde(default)]
    force: bool,
}

pub async fn action(
    State(a): State<Admin>,
    Base(base): Base,
    Path(id): Path<String>,
    Pairs(pairs): Pairs,
    Body(body): Body,
) -> ApiResult {
    let action = super::action_of(&schema::types::VOLUME, &pairs)?;
    let action = Action::parse(action.name)?;
    let b = &a.ballast;
    let v = b.find(&id)?;
    let input: ActionInput = match schema::types::VOLUME.action(action.name()).and_then(|d| d.input)
    {
        Some(input) => {
            accept(&a, schema::find(input).expect("inputs have schemas"), &body, Mode::Input)?
        }
        None => ActionInput::default(),
    };
    let given = Given { force: input.force, renamed: input.name.is_some() };
    require_available(&a, &v, action, given)?;
    let v = match action {
        Action::Allocate => b.allocate(&id).await?,
        Action::Activate => b.activate(&id).await?,
        Action::Deactivate => b.deactivate(&id).await?,
        Action::Deallocate => b.deallocate(&id, input.force).await?,
        Action::Snapshot => {
            let s = b
                .snapshot(&id, input.name)
                .await
                .map_err(|e| ApiError::from(e).on_field("name"))?;
            return Ok(reply(StatusCode::ACCEPTED, resource::snapshot(&a, &base, &s)));
        }
        Action::RevertToSnapshot => {
            let snap = input.snapshot_id.unwrap_or_default();
            let found = b.find_snapshot_of(v.id, &snap).map_err(|e| {
                let e = ApiError::from(e).as_reference("snapshotId");
                e.on_field("snapshotId")
            })?;
            if found.volume_id != v.id {
                return Err(ApiError::field(
                    "InvalidReference",
                    "snapshotId",
                    format!(
                        "snapshot {} is another volume's, not {:?}'s",
                        found.public_id(),
                        v.name
                    ),
                ));
            }
            let v = b.revert(&id, &snap).await?;
            return Ok(reply(StatusCode::ACCEPTED, resource::volume_value(&a, &base, &v)));
        }
        Action::RestoreFromBackup => {
            let backup = input.backup_id.unwrap_or_default();
            b.find_backup(&backup).map_err(|e| ApiError::from(e).as_reference("backupId"))?;
            let v = b.restore_from_backup(&id, &backup).await?;
            return Ok(reply(StatusCode::ACCEPTED, resource::volume_value(&a, &base, &v)));
        }
        Action::Remove => b.remove_volume(&id).await?,
        Action::Restore => {
            b.restore(&id, input.name).await.map_err(|e| ApiError::from(e).on_field("name"))?
        }
        Action::Purge => b.purge(&id).await?,
    };
    Ok(reply(StatusCode::OK, resource::volume_value(&a, &base, &v)))
}
