//! The `ballast` client commands (docs/design.md, "The CLI"): each talks
//! to the admin endpoint and prints a table, or JSON with `--json`. One
//! file per command group.

mod backup;
mod client;
mod cluster;
pub mod complete;
mod doctor;
mod output;
mod pool;
mod snapshot;
mod volume;

use clap::{Args, Subcommand};

pub use client::Client;

/// Flags every client command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Where the daemon's admin endpoint is (unix:///path or http://host:port)
    #[arg(
        long,
        global = true,
        env = "BALLAST_ADMIN",
        default_value = "unix:///run/ballast/admin.sock"
    )]
    pub admin: String,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    /// Return at once instead of waiting for long operations
    #[arg(long, global = true)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Volumes: list, inspect, create, remove, restore, purge, state actions
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Snapshots: create, list, remove, revert
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Backups: create, list, restore, verify, remove
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Storage pools
    #[command(subcommand)]
    Pool(pool::PoolCmd),
    /// The cluster this host joined: its hosts and what each holds
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Check this host for what the daemon and its pools need, and say
    /// what to fix
    Doctor,
    /// The names of KIND the daemon has, one a line, for shell completion
    #[command(name = "__names", hide = true)]
    Names {
        #[arg(value_enum)]
        kind: complete::Kind,
    },
}

/// Runs one client command.
pub fn run(command: Command, global: Global) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async {
        let client = Client::new(&global.admin)?;
        match command {
            Command::Volume(cmd) => volume::run(cmd, &client, &global).await,
            Command::Snapshot(cmd) => snapshot::run(cmd, &client, &global).await,
            Command::Backup(cmd) => backup::run(cmd, &client, &global).await,
            Command::Pool(cmd) => pool::run(cmd, &client, &global).await,
            Command::Cluster(cmd) => cluster::run(cmd, &client, &global).await,
            Command::Doctor => doctor::run(&client, &global.admin).await,
            Command::Names { kind } => {
                complete::print_names(kind, &client).await;
                Ok(())
            }
        }
    })
}
