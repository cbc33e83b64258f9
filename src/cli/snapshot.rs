//! `ballast snapshot …`

use std::collections::HashMap;

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::client::seg;
use super::output::{cell, done, list, size, wait};
use super::{Client, Global};

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot of a volume
    Create {
        volume: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List snapshots, of one volume or of all
    Ls { volume: Option<String> },
    /// Remove a snapshot
    Rm { snapshot: String },
    /// Make a volume's content its snapshot's (the volume must be unmounted)
    Revert { volume: String, snapshot: String },
}

pub async fn run(cmd: SnapshotCmd, client: &Client, global: &Global) -> Result<(), String> {
    match cmd {
        SnapshotCmd::Create { volume, name } => {
            let url = format!("/v1/volumes/{}?action=snapshot", seg(&volume));
            let snap = client.call(Method::POST, &url, Some(json!({ "name": name }))).await?;
            let path = format!("/v1/snapshots/{}", seg(&cell(&snap["id"])));
            let snap = wait(client, global, &path, snap).await?;
            let line = format!(
                "snapshot {} ({}) of {volume}: {}",
                cell(&snap["name"]),
                cell(&snap["id"]),
                cell(&snap["state"])
            );
            done(global, &snap, line);
        }
        SnapshotCmd::Ls { volume } => {
            // Volumes by name in the table, as everywhere else.
            let mut names = HashMap::new();
            let url = match volume {
                Some(v) => {
                    let vol =
                        client.call(Method::GET, &format!("/v1/volumes/{}", seg(&v)), None).await?;
                    names.insert(cell(&vol["id"]), cell(&vol["name"]));
                    format!("/v1/snapshots?volumeId={}", seg(&cell(&vol["id"])))
                }
                None => {
                    if !global.json {
                        // The trash's too: their snapshots are kept.
                        let vols = client.list("/v1/volumes?state_ne=purged").await?;
                        for v in vols["data"].as_array().into_iter().flatten() {
                            names.insert(cell(&v["id"]), cell(&v["name"]));
                        }
                    }
                    "/v1/snapshots".into()
                }
            };
            print_list(global, &client.list(&url).await?, &names);
        }
        SnapshotCmd::Rm { snapshot } => {
            let snap = client
                .call(Method::DELETE, &format!("/v1/snapshots/{}", seg(&snapshot)), None)
                .await?;
            done(
                global,
                &snap,
                format!("removed snapshot {} ({})", cell(&snap["name"]), cell(&snap["id"])),
            );
        }
        SnapshotCmd::Revert { volume, snapshot } => {
            let url = format!("/v1/volumes/{}?action=reverttosnapshot", seg(&volume));
            let v =
                client.call(Method::POST, &url, Some(json!({ "snapshotId": snapshot }))).await?;
            let path = format!("/v1/volumes/{}", seg(&cell(&v["id"])));
            let v = wait(client, global, &path, v).await?;
            let line = if v["transitioning"] == "yes" {
                format!("reverting {volume} to {snapshot}")
            } else {
                format!("reverted {volume} to {snapshot}")
            };
            done(global, &v, line);
        }
    }
    Ok(())
}

fn print_list(global: &Global, collection: &Value, names: &HashMap<String, String>) {
    list(global, collection, &["ID", "NAME", "VOLUME", "STATE", "SIZE", "CREATED"], |s| {
        vec![
            cell(&s["id"]),
            cell(&s["name"]),
            names.get(&cell(&s["volumeId"])).cloned().unwrap_or_else(|| cell(&s["volumeId"])),
            cell(&s["state"]),
            size(&s["sizeBytes"]),
            cell(&s["created"]),
        ]
    });
}
