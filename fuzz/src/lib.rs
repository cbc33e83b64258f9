//! What the fuzz targets share: one ballast, opened once per process on a
//! temporary state directory (a default dir pool, no trash retention), a
//! current-thread runtime to drive its routers in-process, and a tidy-up
//! that keeps the state small however many inputs run.

use std::path::Path;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ballast::config::Config;
use ballast::core::Ballast;
use ballast::metrics::Metrics;
use tower::ServiceExt;

/// The daemon's state, shared by every input of one fuzzing process.
pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub ballast: Ballast,
    pub metrics: Metrics,
    /// Where the state lives; never removed by the process (a static is
    /// never dropped): `scripts/fuzz` points TMPDIR at a directory it
    /// removes afterwards.
    pub dir: tempfile::TempDir,
}

/// Above this many volumes and snapshots, [`Fixture::tidy`] clears them.
const MAX_OBJECTS: usize = 64;

impl Fixture {
    /// The process's one fixture, opened on first use.
    pub fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("ballast-fuzz-")
                .tempdir()
                .expect("creating the state directory");
            std::fs::create_dir_all(dir.path().join("pools")).expect("creating the pools dir");
            let config = Config::parse("trash_retention = \"0s\"\n", dir.path())
                .expect("the fuzzing config is valid");
            let ballast = Ballast::open(&config, dir.path()).expect("opening ballast");
            let metrics = Metrics::new(ballast.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("starting the runtime");
            Fixture { runtime, ballast, metrics, dir }
        })
    }

    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends one request through `router` and returns the status, the
    /// Content-Type and the whole body.
    pub fn call(&self, router: &Router, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
        self.runtime.block_on(async {
            let resp = match router.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("reading an in-memory body");
            (status, content_type, body.to_vec())
        })
    }

    /// Once the fuzzer has made more than a few dozen volumes and
    /// snapshots, takes them all away again (unmount, remove, which purges
    /// at once with no retention), so that the state, and the time each
    /// input takes, stay bounded. Whatever refuses (a job in flight) is
    /// left for a later pass.
    pub fn tidy(&self) {
        let b = &self.ballast;
        if b.list().len() + b.snapshots(None).len() <= MAX_OBJECTS {
            return;
        }
        self.runtime.block_on(async {
            for s in b.snapshots(None) {
                let _ = b.remove_snapshot(&s.public_id()).await;
            }
            for v in b.list() {
                for (id, n) in &v.mounts {
                    for _ in 0..*n {
                        let _ = b.unmount(&v.name, id).await;
                    }
                }
                let _ = b.remove(&v.name).await;
                let _ = b.remove_volume(&v.public_id()).await;
            }
        });
    }
}
