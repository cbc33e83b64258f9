//! ballast: a Docker volume plugin with snapshots, pools and backups.
//!
//! `docs/design.md` is the contract this code keeps: the volume model and
//! its state table, the mapping of Docker's calls, the admin API's
//! conventions and error codes, and what snapshots, the trash and backups
//! promise. Comments cite its sections by heading.
//!
//! # Layout
//!
//! The domain core knows volumes and pools and nothing of HTTP; every
//! protocol is a thin adapter over it.
//!
//! - [`core`]: the domain. [`core::Ballast`] is a cheap-clone handle that
//!   owns the in-memory view, the per-volume locks and the storage pools.
//!   One file per operation (`create`, `fill`: the copy a new volume
//!   starts as, `mount`, `remove`, `snapshots`, `actions`: the state
//!   table); `core/recover.rs`: start-up recovery; `core/backups/`: the
//!   targets and the published backups, taking one (`create.rs`),
//!   listing a target's repository (`sync.rs`) and restoring
//!   (`restore.rs`); `core/locks.rs`: per-volume locks and the read
//!   leases of long jobs; `core/expose.rs`: the mountpoints handed to
//!   Docker as binds under `serve --mount-root`; `core/cluster/`: the
//!   core in a cluster (mirror, holdings, fencing).
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
//!   everything; `tree/read.rs`: a live tree listed for a backup that
//!   reads a volume in place; `tree/bind.rs`: binds of a directory by
//!   descriptor):
//!   removal that never follows a symlink or crosses a mount, copies that
//!   keep metadata, disk usage.
//! - [`docker`]: the VolumeDriver protocol adapter (plugin socket).
//! - [`admin`]: the admin endpoint (admin socket, optional TCP with basic
//!   auth): Rancher's API spec over the core, one file per collection;
//!   `admin/schema/`: every type described once (`/v1/schemas`, request
//!   checks, filters, the OpenAPI types); `admin/query/`: a
//!   collection's query (`filter.rs` with `like.rs`: filters and SQL's
//!   LIKE under a step budget; `page.rs`: sorts, pages and their markers;
//!   `collection.rs`: the collection body and its links); `admin/urls.rs`: canonical paths and absolute links;
//!   `admin/error.rs`: the one mapping of failures to error bodies;
//!   `admin/containers.rs`: which containers mount a volume, asked of
//!   Docker's API for in-use errors;
//!   `admin/form.rs`: form bodies read as the JSON they stand for;
//!   `admin/html/`: the same answers as pages for browsers, and the
//!   dashboard (one layer around the routes);
//!   `/metrics`, `/v1/openapi.json`.
//! - [`cli`]: the client subcommands of the `ballast` binary.
//! - [`metrics`]: Prometheus metrics for both sockets.
//! - [`snapshot`]: the snapshot record.
//! - [`public_id`]: the records' public ids (`1v7`, `1s42`, `1b3`), printed
//!   and read in one place (a leaf).
//! - [`schedule`]: a volume's scheduled snapshots and backups (a leaf).
//! - [`backup`]: restic repositories behind the `Repository` trait
//!   (`backup/restic.rs` over `rustic_core`, `backup/s3.rs`).
//! - [`backup_record`]: the backup record, and what every backup records
//!   of its volume.
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
//! - [`units`]: sizes, durations and times, parsed and formatted (a
//!   leaf).
//! - [`error`]: the domain error, whose variants map to every transport's
//!   status in one place per adapter.
//! - [`cluster`]: what the hosts of a cluster agree on, behind the
//!   [`cluster::Cluster`] trait: `cluster/etcd/` the one implementation
//!   (lease, watch, `registry.rs`: the transactions), `cluster/fence.rs`
//!   making a host that lost its lease stop writing; `core/cluster.rs`
//!   is the core's side (docs/cluster.md).
//! - [`sys`]: the only `unsafe` code: inherited file descriptors, btrfs
//!   and loop-device ioctls.
//!
//! Imports run one way: `sys` ← `tree` ← `pool` ← `core` ← adapters
//! (`docker`, `admin`) ← `serve`; `units` and `volume` are leaves that
//! `config`, `opts` and the CLI share; the records (`volume`, `snapshot`,
//! `schedule`, `backup_record`, and their `public_id`s) sit below the
//! store and the engines and import none of them; the CLI talks to the
//! admin API only.
//! `layout_tests.rs` holds the core, the CLI and `unsafe` to these rules.

pub mod admin;
pub mod backup;
pub mod backup_record;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod core;
pub mod docker;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod opts;
pub mod pool;
pub mod public_id;
pub mod schedule;
pub mod serve;
pub mod snapshot;
pub mod store;
// The one home of `unsafe` code; Cargo.toml denies it everywhere else.
#[allow(unsafe_code)]
pub mod sys;
pub mod tree;
pub mod units;
pub mod volume;

pub use error::{Error, Result};

/// The version `--version` shows: the crate's, and the git revision built.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("BALLAST_GIT_REV"), ")");

#[cfg(test)]
mod layout_tests;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The places that state or cite the contract; every file beneath the
    /// directories is read.
    const CITING: &[&str] = &["src", "docs", "examples", "plugin", "tests", "README.md"];

    /// Every regular file under `root` (or `root` itself), walked with an
    /// explicit stack; symlinks are not followed.
    pub(crate) fn files(root: &Path) -> Vec<PathBuf> {
        let (mut found, mut todo) = (Vec::new(), vec![root.to_path_buf()]);
        while let Some(path) = todo.pop() {
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read_dir") {
                    todo.push(entry.expect("dir entry").path());
                }
            } else if meta.is_file() {
                found.push(path);
            }
        }
        found
    }

    #[test]
    fn the_repository_cites_no_contract_but_its_own_design_document() {
        // Spelled in pieces, so that this file does not match itself.
        let banned = [concat!("SP", "EC §"), concat!("SP", "EC.md")];
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(root.join("docs/design.md").is_file(), "docs/design.md is the contract");
        let mut hits = Vec::new();
        for place in CITING {
            for file in files(&root.join(place)) {
                let bytes = std::fs::read(&file).expect("read");
                let text = String::from_utf8_lossy(&bytes);
                for (n, line) in text.lines().enumerate() {
                    if banned.iter().any(|b| line.contains(b)) {
                        let shown = file.strip_prefix(root).unwrap_or(&file).display();
                        hits.push(format!("{shown}:{}: {line}", n + 1));
                    }
                }
            }
        }
        assert!(
            hits.is_empty(),
            "cite docs/design.md (by section heading) instead of a document the repository \
             does not hold:\n{}",
            hits.join("\n")
        );
    }

    #[test]
    fn every_section_of_docs_design_md_that_a_comment_cites_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let design = std::fs::read_to_string(root.join("docs/design.md")).expect("read");
        let headings: Vec<&str> = design
            .lines()
            .filter(|l| l.starts_with('#'))
            .filter_map(|l| l.trim_start_matches('#').strip_prefix(' '))
            .collect();
        // Spelled in pieces, so that this file does not match itself.
        let cite = concat!("docs/design", ".md, \"");
        let mut missing = Vec::new();
        for place in ["src", "tests"] {
            for file in files(&root.join(place)) {
                let Ok(text) = std::fs::read_to_string(&file) else { continue };
                // Comments wrap: join the lines without their comment marks.
                let joined: Vec<&str> = text
                    .lines()
                    .map(|l| {
                        l.trim().trim_start_matches("//").trim_start_matches(['/', '!']).trim()
                    })
                    .collect();
                let joined = joined.join(" ");
                for (at, _) in joined.match_indices(cite) {
                    let rest = &joined[at + cite.len()..];
                    let section = rest.split('"').next().unwrap_or_default();
                    if !headings.contains(&section) {
                        let shown = file.strip_prefix(root).unwrap_or(&file).display();
                        missing.push(format!("{shown}: {section:?}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "docs/design.md has no such heading:\n{}", missing.join("\n"));
    }
}
