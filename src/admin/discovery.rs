//! What a generic client starts from: `/` (the API versions), `/v1` (a
//! link to every collection), `/v1/schemas` (every type, field, action
//! and filter) and the one project.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::extract::Path;
use super::schema::{self, SCHEMAS};
use super::urls::{Base, PROJECT};
use super::{Admin, ApiResult, reply};
use crate::Error;

/// The collections linked from `/v1` and from the project.
fn collection_links(base: &str) -> Map<String, Value> {
    let mut links = Map::new();
    for s in SCHEMAS {
        if let Some(c) = s.collection {
            links.insert(c.into(), json!(format!("{base}/v1/{c}")));
        }
    }
    links
}

fn version(base: &str) -> Value {
    let mut links = collection_links(base);
    links.insert("self".into(), json!(format!("{base}/v1")));
    links.insert("openapi".into(), json!(format!("{base}/v1/openapi.json")));
    links.insert("schemas".into(), json!(format!("{base}/v1/schemas")));
    json!({ "id": "v1", "type": "apiVersion", "deprecated": false, "links": links })
}

/// `GET /`: the versions of the API (there is one).
pub async fn versions(Base(base): Base) -> ApiResult {
    Ok(reply(
        StatusCode::OK,
        json!({
            "type": "collection",
            "resourceType": "apiVersion",
            "links": { "self": format!("{base}/"), "latest": format!("{base}/v1") },
            "data": [version(&base)],
        }),
    ))
}

/// `GET /v1`.
pub async fn root(Base(base): Base) -> ApiResult {
    Ok(reply(StatusCode::OK, version(&base)))
}

pub async fn schemas(State(a): State<Admin>, Base(base): Base) -> ApiResult {
    let data: Vec<Value> = SCHEMAS.iter().map(|s| s.render(&base, &a.driver)).collect();
    Ok(reply(
        StatusCode::OK,
        json!({
            "type": "collection",
            "resourceType": "schema",
            "links": { "self": format!("{base}/v1/schemas"), "root": format!("{base}/v1") },
            "data": data,
        }),
    ))
}

pub async fn schema(State(a): State<Admin>, Base(base): Base, Path(id): Path<String>) -> ApiResult {
    let s = schema::find(&id).ok_or_else(|| {
        let all: Vec<&str> = SCHEMAS.iter().map(|s| s.id).collect();
        Error::NotFound(format!("no schema {id:?}; schemas: {}", all.join(", ")))
    })?;
    Ok(reply(StatusCode::OK, s.render(&base, &a.driver)))
}

fn project(base: &str) -> Value {
    let mut links = collection_links(base);
    links.remove("projects");
    links.insert("self".into(), json!(format!("{base}/v1/projects/{PROJECT}")));
    json!({ "id": PROJECT, "type": "project", "name": "Default", "links": links })
}

pub async fn projects(Base(base): Base) -> ApiResult {
    Ok(reply(
        StatusCode::OK,
        json!({
            "type": "collection",
            "resourceType": "project",
            "links": { "self": format!("{base}/v1/projects") },
            "data": [project(&base)],
        }),
    ))
}

pub async fn project_one(Base(base): Base, Path(id): Path<String>) -> ApiResult {
    if id != PROJECT {
        return Err(
            Error::NotFound(format!("no project {id:?}; the one project is {PROJECT}")).into()
        );
    }
    Ok(reply(StatusCode::OK, project(&base)))
}
