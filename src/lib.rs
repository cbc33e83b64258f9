//! ballast: a Docker volume plugin with snapshots, pools and backups.
//!
//! # Layout
//!
//! The domain core knows volumes and pools and nothing of HTTP; every
//! protocol is a thin adapter over it.
//!
//! - [`core`]: the domain. [`core::Ballast`] is a cheap-clone handle that
//!   owns the in-memory view, the per-volume locks and the storage pools.
//!   One file per operation (`create`, `mount`, `remove`, `snapshots`,
//!   `actions`: the state table); `core/locks.rs`: per-volume locks and the
//!   read leases of long jobs; `core/expose.rs`: the mountpoints handed to
//!   Docker as binds under `serve --mount-root`.
//! - [`volume`]: the volume record (Rancher v1 `volume` fields and states)
//!   and the volume-name rule.
//! - [`opts`]: driverOpts (`-o key=value`) parsed into a typed request.
//! - [`store`]: the crash-safe metadata store (SQLite, one transaction per
//!   change).
//! - [`pool`]: the storage-backend trait and one file per backend:
//!   `pool/dir.rs`, `pool/btrfs.rs`, `pool/loopback.rs` (loop images), and
//!   `pool/host.rs` (host-path volumes, snapshots kept in a dir pool);
//!   `pool/kind.rs`: a pool's configuration and kinds.
//! - [`tree`]: directory-tree work that must stay beneath a pool root
//!   (`tree/walk.rs`: the one iterative walk, bounded in stack and open
//!   descriptors whatever the depth; `tree/copy.rs`: copies that keep
//!   everything; `tree/bind.rs`: binds of a directory by descriptor):
//!   removal that never follows a symlink or crosses a mount, copies that
//!   keep metadata, disk usage.
//! - [`docker`]: the VolumeDriver protocol adapter (plugin socket).
//! - [`admin`]: the admin endpoint (admin socket, optional TCP with basic
//!   auth): Rancher's API spec over the core, one file per collection;
//!   `admin/schema/`: every type described once (`/v1/schemas`, request
//!   checks, filters, the OpenAPI types); `admin/query.rs`: filters, sorts
//!   and pages; `admin/urls.rs`: canonical paths and absolute links;
//!   `admin/error.rs`: the one mapping of failures to error bodies;
//!   `admin/form.rs`: form bodies read as the JSON they stand for;
//!   `admin/html/`: the same answers as pages for browsers, and the
//!   dashboard (one layer around the routes);
//!   `/metrics`, `/v1/openapi.json`.
//! - [`cli`]: the client subcommands of the `ballast` binary.
//! - [`metrics`]: Prometheus metrics for both sockets.
//! - [`snapshot`]: the snapshot record.
//! - [`schedule`]: a volume's scheduled snapshots and backups (a leaf).
//! - [`backup`]: restic repositories behind the `Repository` trait
//!   (`backup/restic.rs` over `rustic_core`, `backup/s3.rs`), and the
//!   backup record.
//! - [`serve`]: the daemon: configuration, sockets, signals, the janitor;
//!   `serve/reference.rs`: the configuration reference, the config file's
//!   keys with `serve`'s own flags read from clap; `serve/check.rs`: the
//!   start-up checks of a configuration against the host (roots, socket
//!   group, pools' places), which `ballast config check` runs too.
//! - [`listen`]: the one HTTP accept loop under every listener: connection
//!   budgets, header, body and write timeouts, accept-error back-off,
//!   graceful stop.
//! - [`config`]: the TOML configuration and its validation;
//!   `config/reference.rs`: every key described once (type, default,
//!   meaning, example), which `config/render.rs` renders as the README's
//!   reference and the commented example file, and tests hold to the
//!   parser; `config/summary.rs`: what a file sets up (`ballast config
//!   check`); `config/syntax.rs`: TOML errors reported by line, column
//!   and key, never quoting the file (it holds credentials).
//! - [`units`]: sizes and durations, parsed and formatted (a leaf).
//! - [`error`]: the domain error, whose variants map to every transport's
//!   status in one place per adapter.
//! - [`sys`]: the only `unsafe` code: inherited file descriptors, btrfs
//!   and loop-device ioctls.
//!
//! Imports run one way: `sys` ← `tree` ← `pool` ← `core` ← adapters
//! (`docker`, `admin`) ← `serve`; `units` and `volume` are leaves that
//! `config`, `opts` and the CLI share; the CLI talks to the admin API only.

pub mod admin;
pub mod backup;
pub mod cli;
pub mod config;
pub mod core;
pub mod docker;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod opts;
pub mod pool;
pub mod schedule;
pub mod serve;
pub mod snapshot;
pub mod store;
pub mod sys;
pub mod tree;
pub mod units;
pub mod volume;

pub use error::{Error, Result};

/// The version `--version` shows: the crate's, and the git revision built.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("BALLAST_GIT_REV"), ")");
