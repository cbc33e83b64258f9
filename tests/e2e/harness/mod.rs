//! The shared test harness: a private ballast daemon per test, a private
//! Docker engine shared by all tests, raw plugin-protocol calls, and
//! cleanup on drop.
//!
//! Docker remembers every plugin it has talked to, and once a plugin's
//! socket is gone it retries it for ~30 s on every unfiltered `docker
//! volume ls`, filtered or not, and on every lookup of an unknown
//! volume. So each test uses its own fixed driver name and removes its
//! volumes while its daemon still answers; daemons that Docker has seen
//! stay up until the test process exits (they get SIGTERM then, through
//! the parent-death signal); and each run starts with a freshly started
//! private engine that has forgotten the drivers of earlier runs.
//!
//! One file per part: `engine.rs` (the private Docker engine, and the
//! names tests claim in it), `daemon.rs` (a private ballast daemon),
//! `conn.rs` (plugin-protocol calls), `http.rs` (the admin API over TCP),
//! `fs.rs` (scratch filesystems).

mod conn;
mod daemon;
mod engine;
mod fs;
mod http;

#[allow(unused_imports)]
pub use conn::*;
#[allow(unused_imports)]
pub use daemon::*;
#[allow(unused_imports)]
pub use engine::*;
#[allow(unused_imports)]
pub use fs::*;
#[allow(unused_imports)]
pub use http::*;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where the private engine keeps its state (images stay between runs).
pub(super) const ENGINE_DIR: &str = "/var/lib/ballast-test";
pub(super) const ENGINE_RUN: &str = "/run/ballast-test";
pub const IMAGE: &str = "ballast-test:busybox";

pub(super) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Deterministic bytes that do not compress (one definition, shared
/// with the unit tests and benchmarks).
// Benches that include this file do not all use it.
#[allow(unused_imports)]
pub use ballast_test_support::noise;

/// Skips (prints why) or, under CI=true, fails.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("CI=true and the end-to-end tests cannot run: {why}");
    }
    eprintln!("SKIPPED end-to-end test: {why}");
}

/// Tests that only talk to the plugin socket need root (mount namespaces,
/// chown) but no Docker engine.
pub fn root_or_skip() -> bool {
    if is_root() {
        true
    } else {
        skip("these tests must run as root");
        false
    }
}
