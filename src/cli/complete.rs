//! Completion of names: `ballast __names KIND` prints the names the
//! running daemon has, and the generated bash, zsh and fish scripts call
//! it for the arguments that take them (clap's static scripts complete
//! flags only).

use std::time::Duration;

use clap::ValueEnum;

use super::Client;

/// What a name argument names.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Volume,
    Snapshot,
    Backup,
    Pool,
}

/// How long a completion waits for the daemon: a shell must not hang on
/// a <TAB>.
const WAIT: Duration = Duration::from_secs(1);

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Kind::Volume => "/v1/volumes",
            Kind::Snapshot => "/v1/snapshots",
            Kind::Backup => "/v1/backups",
            Kind::Pool => "/v1/storagepools",
        }
    }

    /// The kind of name an argument with this id takes.
    fn of_arg(id: &str) -> Option<Kind> {
        match id {
            "volume" | "source" | "into" => Some(Kind::Volume),
            "snapshot" => Some(Kind::Snapshot),
            "backup" => Some(Kind::Backup),
            "pool" => Some(Kind::Pool),
            _ => None,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
            Kind::Backup => "backup",
            Kind::Pool => "pool",
        }
    }
}

/// Prints the names of `kind`, one a line; nothing when no daemon
/// answers in time (a completion offers nothing rather than an error).
pub async fn print_names(kind: Kind, client: &Client) {
    let Ok(Ok(list)) = tokio::time::timeout(WAIT, client.list(kind.collection())).await else {
        return;
    };
    let rows = list["data"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    for name in rows.iter().filter_map(|r| r["name"].as_str()) {
        // A name is one word to the shell; others are not offered.
        if !name.is_empty() && !name.contains(char::is_whitespace) {
            out.push_str(name);
            out.push('\n');
        }
    }
    print!("{out}");
}

/// The bash script `clap_complete` made for `cmd`, with the names of
/// each subcommand's name arguments offered: positional ones beside its
/// flags, and the values of its name flags (`--pool`) instead of files.
pub fn bash_with_names(cmd: &clap::Command, script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 4096);
    let mut kinds: Option<Vec<Kind>> = None;
    let mut flag: Option<Kind> = None;
    for line in script.lines() {
        let trimmed = line.trim();
        if line.starts_with("        ballast__") && trimmed.ends_with(')') {
            kinds = subcommand(cmd, trimmed.trim_end_matches(')'))
                .map(positional_kinds)
                .filter(|k| !k.is_empty());
            flag = None;
        }
        if trimmed.starts_with("opts=\"") && trimmed.contains(" __names") {
            // The hidden subcommand is the script's, not the user's.
            out.push_str(&line.replace(" __names", ""));
            out.push('\n');
            continue;
        }
        if let (Some(k), Some(rest)) = (&kinds, trimmed.strip_prefix("opts=\"")) {
            let calls: Vec<String> = k.iter().map(|k| names_call(*k)).collect();
            let indent = &line[..line.len() - trimmed.len()];
            let opts = rest.trim_end_matches('"');
            out.push_str(&format!("{indent}opts=\"{opts} {}\"\n", calls.join(" ")));
            continue;
        }
        if trimmed.starts_with("--") && trimmed.ends_with(')') {
            flag = Kind::of_arg(trimmed.trim_start_matches("--").trim_end_matches(')'));
        }
        if let (Some(k), true) = (flag, trimmed == r#"COMPREPLY=($(compgen -f "${cur}"))"#) {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!(
                "{indent}COMPREPLY=($(compgen -W \"{}\" -- \"${{cur}}\"))\n",
                names_call(k)
            ));
            flag = None;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The zsh script `clap_complete` made, with the names of each name
/// argument (`':volume:_default'`, `--pool=[…]:POOL:_default'`) offered.
pub fn zsh_with_names(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 4096);
    // The hidden subcommand is the script's, not the user's.
    for line in script.lines().filter(|l| !l.starts_with("'__names:")) {
        let mut line = line.to_string();
        if let Some(end) = line.rfind(":_default'") {
            let start = line[..end].rfind(':').map_or(end, |i| i + 1);
            if let Some(k) = Kind::of_arg(&line[start..end].to_ascii_lowercase()) {
                let action = format!(
                    "{{compadd -- ${{(f)\"$(ballast __names {} 2>/dev/null)\"}}}}",
                    k.arg()
                );
                line.replace_range(end + 1..end + ":_default".len(), &action);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The fish script `clap_complete` made, with the names offered for each
/// name flag's value and each subcommand's positional name arguments.
pub fn fish_with_names(cmd: &clap::Command, script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 4096);
    for line in script.lines().filter(|l| !l.contains(r#"-a "__names""#)) {
        out.push_str(line);
        let flag = line.split(" -l ").nth(1).and_then(|rest| rest.split(' ').next());
        if let (Some(k), true) = (flag.and_then(Kind::of_arg), line.ends_with(" -r")) {
            out.push_str(&format!(" -f -a \"({})\"", names_command(k)));
        }
        out.push('\n');
    }
    for group in cmd.get_subcommands() {
        for sub in group.get_subcommands() {
            for k in positional_kinds(sub) {
                out.push_str(&format!(
                    "complete -c ballast -n \"__fish_ballast_using_subcommand {}; and \
                     __fish_seen_subcommand_from {}\" -f -a \"({})\"\n",
                    group.get_name(),
                    sub.get_name(),
                    names_command(k)
                ));
            }
        }
    }
    out
}

fn names_command(kind: Kind) -> String {
    format!("ballast __names {} 2>/dev/null", kind.arg())
}

/// The shell words that list the names of `kind` at completion time.
fn names_call(kind: Kind) -> String {
    format!("$({})", names_command(kind))
}

/// The subcommand a bash case label (`ballast__subcmd__volume__subcmd__rm`)
/// stands for.
fn subcommand<'a>(cmd: &'a clap::Command, label: &str) -> Option<&'a clap::Command> {
    let mut parts = label.split("__subcmd__");
    parts.next().filter(|&root| root == "ballast")?;
    let mut at = cmd;
    for name in parts {
        at = at.get_subcommands().find(|c| c.get_name() == name)?;
    }
    Some(at)
}

/// The kinds of the names its positional arguments take.
fn positional_kinds(cmd: &clap::Command) -> Vec<Kind> {
    cmd.get_positionals().filter_map(|a| Kind::of_arg(a.get_id().as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zsh_offers_names_for_name_arguments_only() {
        let script =
            "':volume:_default' \\\n':name:_default' \\\n'--pool=[The pool]:POOL:_default' \\\n";
        let out = zsh_with_names(script);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"':volume:{compadd -- ${(f)"$(ballast __names volume 2>/dev/null)"}}' \"#
        );
        assert_eq!(lines[1], "':name:_default' \\");
        assert!(
            lines[2]
                .ends_with(r#":POOL:{compadd -- ${(f)"$(ballast __names pool 2>/dev/null)"}}' \"#)
        );
    }

    #[test]
    fn fish_offers_names_for_name_flags_and_positionals() {
        let cmd = clap::Command::new("ballast").subcommand(
            clap::Command::new("volume")
                .subcommand(clap::Command::new("rm").arg(clap::Arg::new("volume").required(true))),
        );
        let line = r#"complete -c ballast -n "x" -l pool -d 'The pool' -r"#;
        let out = fish_with_names(&cmd, line);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!(r#"{line} -f -a "(ballast __names pool 2>/dev/null)""#));
        assert_eq!(
            lines[1],
            r#"complete -c ballast -n "__fish_ballast_using_subcommand volume; and __fish_seen_subcommand_from rm" -f -a "(ballast __names volume 2>/dev/null)""#
        );
    }
}
