//! The `ballast` binary: `serve` runs the daemon; other subcommands are
//! clients of its admin endpoint.

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
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (plugin socket + admin endpoint)
    Serve(ballast::serve::ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => ballast::serve::run(args),
    };
    if let Err(e) = result {
        eprintln!("ballast: {e}");
        std::process::exit(1);
    }
}
