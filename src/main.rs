//! The `ballast` binary: `serve` runs the daemon; `config` works on its
//! configuration file without it; every other subcommand is a client of
//! its admin endpoint. Installed as `docker-ballast` in a Docker CLI
//! plugin directory, the same binary is `docker ballast …`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ballast",
    version = ballast::VERSION,
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
    /// The configuration file: check one, print an example or the reference
    #[command(subcommand)]
    Config(ConfigCommand),
    #[command(flatten)]
    Client(ballast::cli::Command),
    /// Print a shell completion script: ballast completions bash|zsh|fish
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ballast.1 and one per subcommand) into DIR
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file as `serve` does at start (the file, and
    /// that its host-path roots, socket group and pools' places exist),
    /// and print what it sets up (exit status 1, naming the problem, when
    /// it is bad)
    Check(ballast::serve::ConfigFiles),
    /// Print a commented configuration file with every key, all commented
    /// out so that the built-in defaults apply
    Example,
    /// Print the configuration reference (Markdown): every key of the
    /// file and the flags of `serve`
    Reference,
}

/// The command line. The client's global flags (`--admin`, `--json`,
/// `--no-wait`) mean nothing to `serve`: it gets hidden copies, which
/// clap then propagates no visible ones over.
fn command() -> clap::Command {
    let cmd = Cli::command();
    let hidden: Vec<clap::Arg> =
        cmd.get_arguments().filter(|a| a.is_global_set()).map(|a| a.clone().hide(true)).collect();
    cmd.mut_subcommand("serve", |serve| serve.args(hidden))
}

/// What Docker's CLI asks a plugin before listing or running it.
const CLI_PLUGIN_METADATA: &str = "docker-cli-plugin-metadata";

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let as_docker_plugin = args
        .first()
        .and_then(|a| PathBuf::from(a).file_name().map(|n| n == "docker-ballast"))
        .unwrap_or(false);
    if args.get(1).is_some_and(|a| a == CLI_PLUGIN_METADATA) {
        println!(
            "{}",
            serde_json::json!({
                "SchemaVersion": "0.1.0",
                "Vendor": "ballast",
                "Version": ballast::VERSION,
                "ShortDescription": "Volumes with pools, snapshots and backups (ballast)",
            })
        );
        return;
    }
    // Fencing's helper (src/cluster/fence.rs): single-threaded, before
    // anything else starts a thread.
    if args.get(1).is_some_and(|a| a == "__fence") {
        let (Some(pid), Some(at)) = (args.get(2), args.get(3)) else { std::process::exit(2) };
        let pid = pid.to_string_lossy();
        if let Err((code, e)) = ballast::cluster::fence::remount_in(&pid, std::path::Path::new(at))
        {
            eprintln!("ballast: {e}");
            std::process::exit(code);
        }
        return;
    }
    // Docker runs `docker-ballast ballast volume ls` for `docker ballast
    // volume ls`: the plugin's own name comes first.
    if as_docker_plugin && args.get(1).is_some_and(|a| a == "ballast") {
        args.remove(1);
    }
    let mut cmd = command();
    if as_docker_plugin {
        // Help and errors say what the user typed.
        cmd = cmd.bin_name("docker ballast");
    }
    let cli = Cli::from_arg_matches(&cmd.get_matches_from(args)).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Serve(args) => ballast::serve::run(args),
        Command::Config(ConfigCommand::Check(files)) => config_check(&files),
        Command::Config(ConfigCommand::Example) => print(ballast::config::example_file()),
        Command::Config(ConfigCommand::Reference) => {
            print(ballast::serve::configuration_reference())
        }
        Command::Client(command) => ballast::cli::run(command, cli.global),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a closed pipe.
            let mut script = Vec::new();
            let mut cmd = command();
            clap_complete::generate(shell, &mut cmd, "ballast", &mut script);
            let text = String::from_utf8_lossy(&script).into_owned();
            use ballast::cli::complete;
            match shell {
                clap_complete::Shell::Bash => {
                    script = complete::bash_with_names(&cmd, &text).into()
                }
                clap_complete::Shell::Zsh => script = complete::zsh_with_names(&text).into(),
                clap_complete::Shell::Fish => {
                    script = complete::fish_with_names(&cmd, &text).into()
                }
                _ => {}
            }
            print(script)
        }
        Command::Man { dir } => man_pages(&dir),
    };
    if let Err(e) = result {
        eprintln!("ballast: {e}");
        std::process::exit(1);
    }
}

/// Writes to stdout; a reader that stopped reading (`| head`) ends the
/// output quietly, as it does for other tools, and any other error is
/// returned, not a panic as from `print!`.
fn print(text: impl AsRef<[u8]>) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().write_all(text.as_ref()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing: {e}")),
        _ => Ok(()),
    }
}

/// `ballast config check`: the file loaded as `serve` loads it, checked
/// against the host as `serve` checks it, and a summary of what it sets
/// up.
fn config_check(files: &ballast::serve::ConfigFiles) -> Result<(), String> {
    let (path, explicit) = files.path();
    let config = files.load()?;
    ballast::serve::check_host(&config, &files.state_dir)
        .map_err(|e| format!("config {}: {e}", path.display()))?;
    let what = if !explicit && !path.exists() {
        "not found: the built-in defaults apply"
    } else {
        "valid"
    };
    print(format!("config {}: {what}\n{}", path.display(), config.summary()))
}

/// `ballast.1`, and `ballast-volume.1`, `ballast-volume-create.1`… for
/// every subcommand, as `man ballast-volume-create` expects.
fn man_pages(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut todo = vec![(String::from("ballast"), command().version(ballast::VERSION))];
    while let Some((name, cmd)) = todo.pop() {
        let cmd = cmd.name(name.clone()).bin_name(name.replace('-', " "));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            todo.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page).map_err(|e| e.to_string())?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
