//! `ballast cluster …`

use clap::Subcommand;

use super::output::{cell, list};
use super::{Client, Global};

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// List the cluster's hosts, their last heartbeat and the volumes
    /// each mounts
    Status,
}

pub async fn run(cmd: ClusterCmd, client: &Client, global: &Global) -> Result<(), String> {
    let ClusterCmd::Status = cmd;
    let nodes = client.list("/v1/clusternodes").await?;
    let none = nodes["data"].as_array().is_none_or(Vec::is_empty);
    if none && !global.json {
        return Err("this host is in no cluster, or etcd knows no host: see [cluster] in \
                    the configuration and `ballast doctor`"
            .into());
    }
    let header = ["NODE", "HEARTBEAT", "STARTED", "VOLUMES", "HOLDS"];
    list(global, &nodes, &header, |n| {
        let name = if n["self"] == true {
            format!("{} (this host)", cell(&n["name"]))
        } else {
            cell(&n["name"])
        };
        let holds: Vec<String> =
            n["holds"].as_array().map(|a| a.iter().map(cell).collect()).unwrap_or_default();
        vec![
            name,
            cell(&n["heartbeat"]),
            cell(&n["started"]),
            cell(&n["holdCount"]),
            if holds.is_empty() { "-".into() } else { holds.join(",") },
        ]
    });
    Ok(())
}
