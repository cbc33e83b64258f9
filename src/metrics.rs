//! Prometheus metrics, served at the admin endpoint's `/metrics`.
//!
//! Request counts and latencies are recorded by a middleware on both the
//! plugin socket and the admin endpoint; volume, pool and snapshot gauges
//! are read from the core at scrape time, so they are never stale.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::core::Ballast;
use crate::snapshot::SnapState;
use crate::volume::State as VolState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    listener: &'static str,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

/// Every metric ballast exports. Cheap to clone (the families share
/// their state).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    ballast: Ballast,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    volumes: Family<StateLabels, Gauge>,
    snapshots: Family<StateLabels, Gauge>,
    pool_capacity: Family<PoolLabels, Gauge>,
    pool_free: Family<PoolLabels, Gauge>,
    pool_used: Family<PoolLabels, Gauge>,
    pool_volumes: Family<PoolLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Metrics {
    pub fn new(ballast: Ballast) -> Metrics {
        let mut registry = Registry::with_prefix("ballast");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by listener, endpoint and status",
            requests.clone(),
        );
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register("request_duration_seconds", "Time to answer a request", latency.clone());
        let volumes = Family::<StateLabels, Gauge>::default();
        registry.register("volumes", "Volumes by state (removed = in the trash)", volumes.clone());
        let snapshots = Family::<StateLabels, Gauge>::default();
        registry.register("snapshots", "Snapshots by state", snapshots.clone());
        registry.register(
            "snapshot_duration_seconds",
            "Time to take a snapshot",
            ballast.snapshot_durations(),
        );
        let pool_capacity = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_capacity_bytes",
            "Size of the filesystem under a pool",
            pool_capacity.clone(),
        );
        let pool_free = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_free_bytes", "Free bytes under a pool", pool_free.clone());
        let pool_used = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_used_bytes",
            "Used bytes of the filesystem under a pool",
            pool_used.clone(),
        );
        let pool_volumes = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_volumes", "Live volumes in a pool", pool_volumes.clone());
        Metrics {
            inner: Arc::new(Inner {
                registry,
                ballast,
                requests,
                latency,
                volumes,
                snapshots,
                pool_capacity,
                pool_free,
                pool_used,
                pool_volumes,
            }),
        }
    }

    /// The Prometheus text exposition of every metric, as of now.
    pub fn render(&self) -> String {
        let m = &self.inner;
        let b = &m.ballast;
        let live = b.list();
        for state in [VolState::Requested, VolState::Inactive, VolState::Active] {
            let n = live.iter().filter(|v| v.state == state).count();
            m.volumes.get_or_create(&StateLabels { state: state.as_str() }).set(n as i64);
        }
        let trash = b.removed().map(|t| t.len()).unwrap_or(0);
        m.volumes
            .get_or_create(&StateLabels { state: VolState::Removed.as_str() })
            .set(trash as i64);
        let snaps = b.snapshots(None);
        for state in [SnapState::Creating, SnapState::Created, SnapState::Error] {
            let n = snaps.iter().filter(|s| s.state == state).count();
            m.snapshots.get_or_create(&StateLabels { state: state.as_str() }).set(n as i64);
        }
        for pool in b.pools() {
            let labels = PoolLabels { pool: pool.name().to_string() };
            if let Ok(space) = pool.backend().map(|b| b.space()).and_then(|s| s.map_err(Into::into))
            {
                m.pool_capacity.get_or_create(&labels).set(space.capacity as i64);
                m.pool_free.get_or_create(&labels).set(space.free as i64);
                m.pool_used
                    .get_or_create(&labels)
                    .set(space.capacity.saturating_sub(space.free) as i64);
            }
            m.pool_volumes.get_or_create(&labels).set(b.pool_volume_count(pool.name()) as i64);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
        out
    }

    fn record(&self, listener: &'static str, endpoint: String, status: u16, started: Instant) {
        let m = &self.inner;
        m.latency
            .get_or_create(&EndpointLabels { listener, endpoint: endpoint.clone() })
            .observe(started.elapsed().as_secs_f64());
        m.requests.get_or_create(&RequestLabels { listener, endpoint, status }).inc();
    }
}

/// Middleware for the admin endpoint: labels by route template, so that
/// ids in paths do not become labels.
pub async fn track_admin(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let endpoint = admin_endpoint(req.method(), route);
    let started = Instant::now();
    let resp = next.run(req).await;
    m.record("admin", endpoint, resp.status().as_u16(), started);
    resp
}

/// The label of an admin request: its method and route template, or
/// `unmatched`. Methods beyond the standard ones are all `OTHER`, so that
/// a client cannot add labels (each with its histogram) without end by
/// sending made-up methods to a known route.
fn admin_endpoint(method: &Method, route: Option<&str>) -> String {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    let Some(route) = route else { return "unmatched".to_string() };
    let method = if STANDARD.contains(method) { method.as_str() } else { "OTHER" };
    format!("{method} {route}")
}

/// Middleware for the plugin socket: labels by protocol method, with
/// unknown paths folded into one label.
pub async fn track_plugin(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let path = req.uri().path().trim_start_matches('/');
    let endpoint = if crate::docker::METHODS.contains(&path) {
        path.to_string()
    } else {
        "unknown".to_string()
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    m.record("plugin", endpoint, resp.status().as_u16(), started);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let route = Some("/v1/volumes/{id}");
        assert_eq!(admin_endpoint(&Method::GET, route), "GET /v1/volumes/{id}");
        assert_eq!(admin_endpoint(&Method::PATCH, route), "PATCH /v1/volumes/{id}");
        for made_up in ["FOO", "GETX", "A1"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(admin_endpoint(&method, route), "OTHER /v1/volumes/{id}");
        }
        assert_eq!(admin_endpoint(&Method::GET, None), "unmatched");
    }
}
