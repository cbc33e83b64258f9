//! The `ballast` binary: `serve` runs the daemon; every other subcommand
//! is a client of its admin endpoint.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ballast",
    version,
    about = "A Docker volume plugin with pools, snapshots and backups"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: ballast::cli::Global,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (plugin socket + admin endpoint)
    Serve(ballast::serve::ServeArgs),
    #[command(flatten)]
    Client(ballast::cli::Command),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => ballast::serve::run(args),
        Command::Client(command) => ballast::cli::run(command, cli.global),
    };
    if let Err(e) = result {
        eprintln!("ballast: {e}");
        std::process::exit(1);
    }
}
