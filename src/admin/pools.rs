//! `/v1/storagepools`.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::extract::{Pairs, Path};
use super::schema::types::STORAGE_POOL;
use super::urls::Base;
use super::{Admin, ApiResult, query, reply};
use crate::Error;
use crate::pool::Scope;
use crate::pool::{BackendKind, Pool};

fn pool(a: &Admin, base: &str, p: &Pool) -> Value {
    let space =
        p.backend().map_err(|e| e.to_string()).and_then(|b| b.space().map_err(|e| e.to_string()));
    let (capacity, free) = space.as_ref().map(|s| (s.capacity, s.free)).unwrap_or((0, 0));
    // A loop pool's disk is shared with its images' promises: what its
    // volumes reserve, and what `overcommit` allows, say how full it is.
    let is_loop = p.config.backend == BackendKind::Loop;
    let reserved = is_loop.then(|| a.ballast.pool_reserved_bytes(p.name()));
    let allowed = is_loop.then_some(crate::units::whole(capacity as f64 * p.config.overcommit));
    json!({
        "id": p.name(),
        "type": "storagePool",
        "name": p.name(),
        "backend": p.config.backend.as_str(),
        "path": p.config.path,
        "scope": match p.config.scope { Scope::Local => "local", Scope::Global => "global" },
        "default": p.config.default,
        "state": if space.is_ok() { "active" } else { "unavailable" },
        "capacityBytes": capacity,
        "usedBytes": capacity.saturating_sub(free),
        "freeBytes": free,
        "reservedBytes": reserved,
        "allowedBytes": allowed,
        "copiesShareData": p.backend().is_ok_and(|b| b.copies_share_data()),
        "volumeCount": a.ballast.pool_volume_count(p.name()),
        "links": {
            "self": format!("{base}/v1/storagepools/{}", p.name()),
            "volumes": format!("{base}/v1/volumes?storagePoolId={}", p.name()),
        },
    })
}

pub async fn list(State(a): State<Admin>, Base(base): Base, Pairs(pairs): Pairs) -> ApiResult {
    let data = a.ballast.pools().map(|p| pool(&a, &base, p)).collect();
    Ok(reply(StatusCode::OK, query::of_values(&base, &STORAGE_POOL, &pairs, data)?))
}

pub async fn show(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    let p = a
        .ballast
        .pools()
        .find(|p| p.name() == id)
        .ok_or_else(|| Error::NotFound(format!("no pool {id:?}")))?;
    Ok(reply(StatusCode::OK, pool(&a, &base, p)))
}
