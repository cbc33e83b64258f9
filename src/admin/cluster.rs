//! `/v1/clusternodes`: the hosts of the cluster this one joined (empty
//! when it joined none), with their heartbeats and what each holds.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use super::extract::Pairs;
use super::schema::types::CLUSTER_NODE;
use super::urls::Base;
use super::{Admin, ApiResult, query, reply};
use crate::units::rfc3339_ms;

pub async fn list(State(a): State<Admin>, Base(base): Base, Pairs(pairs): Pairs) -> ApiResult {
    let nodes = match a.ballast.node() {
        Some(_) => a.ballast.cluster_nodes().await?,
        None => Vec::new(),
    };
    let me = a.ballast.node().unwrap_or_default();
    let data = nodes
        .into_iter()
        .map(|(n, holds)| {
            json!({
                "id": n.node,
                "type": "clusterNode",
                "name": n.node,
                "self": n.node == me,
                "heartbeat": rfc3339_ms(n.heartbeat_ms),
                "started": rfc3339_ms(n.started_ms),
                "holdCount": holds.len(),
                "holds": holds,
                "links": { "self": format!("{base}/v1/clusternodes?name={}", n.node) },
            })
        })
        .collect();
    Ok(reply(StatusCode::OK, query::of_values(&base, &CLUSTER_NODE, &pairs, data)?))
}
