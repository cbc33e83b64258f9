//! `ballast volume …`

use clap::Subcommand;
use hyper::Method;
use serde_json::{Map, Value, json};

use super::client::seg;
use super::output::{cell, done, list, size};
use super::{Client, Global};

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// List volumes
    Ls {
        /// List the trash (removed, not yet purged) instead
        #[arg(long)]
        removed: bool,
    },
    /// Show one volume as JSON
    Inspect { volume: String },
    /// Create a volume
    Create {
        name: String,
        /// Driver option KEY=VALUE (pool, size, fs, description, uid, gid, mode, from-volume,
        /// from-snapshot, from-backup, path, snapshot-every, snapshot-keep, backup-every,
        /// backup-keep, backup-target)
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// Its size, e.g. 10G (the same as -o size=…)
        #[arg(long)]
        size: Option<String>,
        /// The pool to make it in (the same as -o pool=…)
        #[arg(long)]
        pool: Option<String>,
        /// Record it without storage (state requested)
        #[arg(long)]
        no_allocate: bool,
    },
    /// Remove a volume (into the trash)
    Rm { volume: String },
    /// Bring a removed volume back
    Restore {
        volume: String,
        /// Restore under this name (when the old one is taken)
        #[arg(long)]
        name: Option<String>,
    },
    /// Destroy a removed volume's data now
    Purge { volume: String },
    /// Attach a volume on this host
    Activate { volume: String },
    /// Detach an unmounted volume
    Deactivate { volume: String },
    /// Create the storage of a requested volume
    Allocate { volume: String },
    /// Set (replace) a volume's schedule of snapshots and backups; no
    /// flags turns it off
    Schedule {
        volume: String,
        /// How often to snapshot (e.g. 1h, 30m)
        #[arg(long)]
        snapshot_every: Option<String>,
        /// How many scheduled snapshots to keep
        #[arg(long)]
        snapshot_keep: Option<u32>,
        /// How often to back up (e.g. 1d)
        #[arg(long)]
        backup_every: Option<String>,
        /// How many backups of the volume to keep in the target
        #[arg(long)]
        backup_keep: Option<u32>,
        /// The backup target (needed when several are configured)
        #[arg(long)]
        target: Option<String>,
    },
    /// Take a snapshot of a volume (the same as `snapshot create`)
    Snapshot {
        volume: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Free a volume's storage (it becomes requested)
    Deallocate {
        volume: String,
        /// Destroy the data even without a backup
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(cmd: VolumeCmd, client: &Client, global: &Global) -> Result<(), String> {
    let path = |v: &str| format!("/v1/volumes/{}", seg(v));
    let action = |v: &str, a: &str| format!("/v1/volumes/{}?action={a}", seg(v));
    let (resource, verb) = match cmd {
        VolumeCmd::Ls { removed } => {
            let url = if removed { "/v1/volumes?state=removed" } else { "/v1/volumes" };
            let list = client.list(url).await?;
            print_list(global, &list);
            return Ok(());
        }
        VolumeCmd::Snapshot { volume, name } => {
            let cmd = super::snapshot::SnapshotCmd::Create { volume, name };
            return super::snapshot::run(cmd, client, global).await;
        }
        VolumeCmd::Inspect { volume } => {
            let v = client.call(Method::GET, &path(&volume), None).await?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            return Ok(());
        }
        VolumeCmd::Create { name, opts, size, pool, no_allocate } => {
            let mut driver_opts = Map::new();
            for o in opts {
                let (k, v) =
                    o.split_once('=').ok_or_else(|| format!("-o {o:?}: expected KEY=VALUE"))?;
                driver_opts.insert(k.to_string(), Value::from(v));
            }
            for (key, flag) in [("size", size), ("pool", pool)] {
                let Some(value) = flag else { continue };
                if driver_opts.contains_key(key) {
                    return Err(format!("--{key} and -o {key}=… both given: use one"));
                }
                driver_opts.insert(key.to_string(), Value::from(value));
            }
            let body = json!({ "name": name, "driverOpts": driver_opts, "allocate": !no_allocate });
            (client.call(Method::POST, "/v1/volumes", Some(body)).await?, "created")
        }
        VolumeCmd::Rm { volume } => {
            (client.call(Method::DELETE, &path(&volume), None).await?, "removed")
        }
        VolumeCmd::Restore { volume, name } => (
            client
                .call(Method::POST, &action(&volume, "restore"), Some(json!({ "name": name })))
                .await?,
            "restored",
        ),
        VolumeCmd::Purge { volume } => {
            (client.call(Method::POST, &action(&volume, "purge"), None).await?, "purged")
        }
        VolumeCmd::Activate { volume } => {
            (client.call(Method::POST, &action(&volume, "activate"), None).await?, "activated")
        }
        VolumeCmd::Deactivate { volume } => {
            (client.call(Method::POST, &action(&volume, "deactivate"), None).await?, "deactivated")
        }
        VolumeCmd::Allocate { volume } => {
            (client.call(Method::POST, &action(&volume, "allocate"), None).await?, "allocated")
        }
        VolumeCmd::Schedule {
            volume,
            snapshot_every,
            snapshot_keep,
            backup_every,
            backup_keep,
            target,
        } => {
            let schedule = json!({
                "snapshotEvery": snapshot_every,
                "snapshotKeep": snapshot_keep,
                "backupEvery": backup_every,
                "backupKeep": backup_keep,
                "backupTarget": target,
            });
            let body = json!({ "schedule": schedule });
            (client.call(Method::PUT, &path(&volume), Some(body)).await?, "scheduled")
        }
        VolumeCmd::Deallocate { volume, force } => {
            let body = json!({ "force": force });
            (
                client.call(Method::POST, &action(&volume, "deallocate"), Some(body)).await?,
                "deallocated",
            )
        }
    };
    let line = format!(
        "{verb} {} ({}, {})",
        cell(&resource["name"]),
        cell(&resource["id"]),
        cell(&resource["state"])
    );
    done(global, &resource, line);
    Ok(())
}

fn print_list(global: &Global, collection: &Value) {
    let header =
        ["NAME", "ID", "STATE", "POOL", "SIZE", "USED", "MOUNTS", "SNAPSHOTS", "DESCRIPTION"];
    list(global, collection, &header, |v| {
        vec![
            cell(&v["name"]),
            cell(&v["id"]),
            cell(&v["state"]),
            cell(&v["storagePoolId"]),
            size(&v["sizeBytes"]),
            size(&v["usedBytes"]),
            cell(&v["mountCount"]),
            cell(&v["snapshotCount"]),
            cell(&v["description"]),
        ]
    });
}
