//! `ballast pool …`

use clap::Subcommand;
use hyper::Method;

use super::output::{cell, size, table};
use super::{Client, Global};

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// List storage pools with their capacity
    Ls,
}

pub async fn run(cmd: PoolCmd, client: &Client, global: &Global) -> Result<(), String> {
    let PoolCmd::Ls = cmd;
    let list = client.call(Method::GET, "/v1/storagepools", None).await?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&list["data"]).unwrap_or_default());
        return Ok(());
    }
    let rows = list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
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
        })
        .collect();
    table(
        &["NAME", "BACKEND", "SCOPE", "STATE", "CAPACITY", "USED", "FREE", "VOLUMES", "PATH"],
        rows,
    );
    Ok(())
}
