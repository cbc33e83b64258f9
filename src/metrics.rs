//! Prometheus metrics, served at the admin endpoint's `/metrics`.
//!
//! Request counts and latencies are recorded by each adapter (a small
//! middleware on the plugin socket and on the admin endpoint) through
//! [`Metrics::record_request`]; this module knows no adapter. Volume, pool
//! and snapshot gauges are read from the core at scrape time, so they are
//! never stale.

use std::sync::Arc;
use std::time::Duration;

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

/// A count or a byte size as a gauge's i64; one past `i64::MAX` (never
/// reached) shows as the maximum rather than as a negative number.
fn gauge(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
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
            m.volumes.get_or_create(&StateLabels { state: state.as_str() }).set(gauge(n));
        }
        let trash = b.removed().map(|t| t.len()).unwrap_or(0);
        m.volumes
            .get_or_create(&StateLabels { state: VolState::Removed.as_str() })
            .set(gauge(trash));
        let snaps = b.snapshots(None);
        for state in [SnapState::Creating, SnapState::Created, SnapState::Error] {
            let n = snaps.iter().filter(|s| s.state == state).count();
            m.snapshots.get_or_create(&StateLabels { state: state.as_str() }).set(gauge(n));
        }
        for pool in b.pools() {
            let labels = PoolLabels { pool: pool.name().to_string() };
            if let Ok(space) = pool.backend().map(|b| b.space()).and_then(|s| s.map_err(Into::into))
            {
                m.pool_capacity.get_or_create(&labels).set(gauge(space.capacity));
                m.pool_free.get_or_create(&labels).set(gauge(space.free));
                m.pool_used
                    .get_or_create(&labels)
                    .set(gauge(space.capacity.saturating_sub(space.free)));
            }
            m.pool_volumes.get_or_create(&labels).set(gauge(b.pool_volume_count(pool.name())));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
        out
    }

    /// Counts one answered request. Every label becomes a series kept
    /// for the life of the daemon, so `endpoint` must come from a fixed
    /// set (a route template, a protocol method, a fixed fallback), never
    /// from what the client sent.
    pub fn record_request(
        &self,
        listener: &'static str,
        endpoint: String,
        status: u16,
        elapsed: Duration,
    ) {
        let m = &self.inner;
        m.latency
            .get_or_create(&EndpointLabels { listener, endpoint: endpoint.clone() })
            .observe(elapsed.as_secs_f64());
        m.requests.get_or_create(&RequestLabels { listener, endpoint, status }).inc();
    }
}
