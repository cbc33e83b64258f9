//! `ballast pool …`

use clap::Subcommand;

use super::output::{cell, list, size};
use super::{Client, Global};

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// List storage pools with their capacity
    Ls,
}

pub async fn run(cmd: PoolCmd, client: &Client, global: &Global) -> Result<(), String> {
    let PoolCmd::Ls = cmd;
    let pools = client.list("/v1/storagepools").await?;
    let header =
        ["NAME", "BACKEND", "SCOPE", "STATE", "CAPACITY", "USED", "FREE", "VOLUMES", "PATH"];
    list(global, &pools, &header, |p| {
        let name = if p["default"] == true {
            format!("{} (default)", cell(&p["name"]))
        } else {
            cell(&p["name"])
        };
        vec![
            name,
            cell(&p["backend"]),
            cell(&p["scope"]),
            cell(&p["state"]),
            size(&p["capacityBytes"]),
            size(&p["usedBytes"]),
            size(&p["freeBytes"]),
            cell(&p["volumeCount"]),
            cell(&p["path"]),
        ]
    });
    Ok(())
}
