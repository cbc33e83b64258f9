//! `ballast backup …`

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::client::seg;
use super::output::{cell, done, list, size, wait};
use super::{Client, Global};

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Back up a volume (as it is, or from a new snapshot removed after;
    /// see README) or a snapshot
    Create {
        /// A volume, or a snapshot id (1s7)
        source: String,
        /// Back up this existing snapshot of the volume
        #[arg(long)]
        snapshot: Option<String>,
        /// The backup target (needed when several are configured)
        #[arg(long)]
        target: Option<String>,
    },
    /// List backups, of one volume or of all; with --target, first read the
    /// target's repository for backups made elsewhere
    Ls {
        volume: Option<String>,
        #[arg(long)]
        target: Option<String>,
    },
    /// Restore a backup into a new volume (--name) or into an existing,
    /// unmounted one (--into)
    Restore {
        backup: String,
        #[arg(long, conflicts_with = "into")]
        name: Option<String>,
        #[arg(long)]
        into: Option<String>,
        /// The pool of the new volume (default: the default pool)
        #[arg(long, conflicts_with = "into")]
        pool: Option<String>,
    },
    /// Read back everything a backup needs and check it
    Verify { backup: String },
    /// Forget a backup and free the data no other backup uses
    Rm { backup: String },
}

pub async fn run(cmd: BackupCmd, client: &Client, global: &Global) -> Result<(), String> {
    match cmd {
        BackupCmd::Create { source, snapshot, target } => {
            let is_snapshot = crate::public_id::Kind::Snapshot.shapes(&source);
            let body = if is_snapshot {
                json!({ "snapshotId": source, "backupTargetId": target })
            } else {
                json!({ "volumeId": source, "snapshotId": snapshot, "backupTargetId": target })
            };
            let b = client.call(Method::POST, "/v1/backups", Some(body)).await?;
            let path = format!("/v1/backups/{}", seg(&cell(&b["id"])));
            let b = wait(client, global, &path, b).await?;
            let line = format!(
                "backup {} ({}) of {} to {}: {}, {} stored",
                cell(&b["name"]),
                cell(&b["id"]),
                cell(&b["volumeName"]),
                cell(&b["backupTargetId"]),
                cell(&b["state"]),
                size(&b["storedBytes"])
            );
            // Files that changed while being read, named by the backup.
            let line = match b["transitioningMessage"].as_str().filter(|m| !m.is_empty()) {
                Some(warning) => format!("{line}\nwarning: {warning}"),
                None => line,
            };
            done(global, &b, line);
        }
        BackupCmd::Ls { volume, target } => {
            let mut query = Vec::new();
            if let Some(t) = &target {
                let url = format!("/v1/backuptargets/{}?action=sync", seg(t));
                client.call(Method::POST, &url, None).await?;
                query.push(format!("backupTargetId={}", seg(t)));
            }
            if let Some(v) = volume {
                // By name: backups made on another host have no local volume.
                query.push(format!("volumeName={}", seg(&v)));
            }
            let url = format!("/v1/backups?{}", query.join("&"));
            print_list(global, &client.list(&url).await?);
        }
        BackupCmd::Restore { backup, name, into, pool } => {
            let in_place = into.is_some();
            let (path, v) = match into {
                Some(volume) => {
                    let url = format!("/v1/volumes/{}?action=restorefrombackup", seg(&volume));
                    let v = client.call(Method::POST, &url, Some(json!({ "backupId": backup })));
                    let v = v.await?;
                    (format!("/v1/volumes/{}", seg(&cell(&v["id"]))), v)
                }
                None => {
                    let url = format!("/v1/backups/{}?action=restore", seg(&backup));
                    let body = json!({ "name": name, "storagePoolId": pool });
                    let v = client.call(Method::POST, &url, Some(body)).await?;
                    (format!("/v1/volumes/{}", seg(&cell(&v["id"]))), v)
                }
            };
            let v = wait(client, global, &path, v).await?;
            // A failed in-place restore leaves the volume usable
            // (`transitioning: no`) with the failure in its message.
            let message = v["transitioningMessage"].as_str().unwrap_or_default();
            if in_place && v["transitioning"] == "no" && !message.is_empty() {
                return Err(message.to_string());
            }
            let line = if v["transitioning"] == "yes" {
                format!("restoring {} from {backup}", cell(&v["name"]))
            } else {
                format!("restored {} from {backup}", cell(&v["name"]))
            };
            done(global, &v, line);
        }
        BackupCmd::Verify { backup } => {
            let url = format!("/v1/backups/{}?action=verify", seg(&backup));
            let b = client.call(Method::POST, &url, None).await?;
            done(global, &b, format!("backup {} ({}): verified", cell(&b["name"]), cell(&b["id"])));
        }
        BackupCmd::Rm { backup } => {
            let b =
                client.call(Method::DELETE, &format!("/v1/backups/{}", seg(&backup)), None).await?;
            done(global, &b, format!("removed backup {} ({})", cell(&b["name"]), cell(&b["id"])));
        }
    }
    Ok(())
}

fn print_list(global: &Global, collection: &Value) {
    let header = ["ID", "NAME", "VOLUME", "TARGET", "RESTIC", "STATE", "SIZE", "STORED", "CREATED"];
    list(global, collection, &header, |b| {
        vec![
            cell(&b["id"]),
            cell(&b["name"]),
            cell(&b["volumeName"]),
            cell(&b["backupTargetId"]),
            b["resticId"].as_str().map_or("-".into(), |r| r[..r.len().min(8)].to_string()),
            cell(&b["state"]),
            size(&b["sizeBytes"]),
            size(&b["storedBytes"]),
            cell(&b["created"]),
        ]
    });
}
