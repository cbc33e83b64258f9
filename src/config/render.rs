//! The description in `reference.rs` rendered for people: the README's
//! configuration reference (Markdown) and the commented default file that
//! `ballast config example` prints.
//!
//! The reference also lists the flags of `ballast serve`, the other half
//! of configuring the daemon. They come in as data ([`Flag`]): `config`
//! is a leaf and cannot know `serve`, whose `configuration_reference`
//! reads them from clap and calls [`markdown`].

use super::DEFAULT_CONFIG;
use super::reference::{EXAMPLE, Key, Omitted, SECTIONS, keys};

/// One flag of `ballast serve`, as the reference shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    /// `--state-dir`
    pub flag: String,
    pub env: Option<String>,
    pub default: Option<String>,
    /// The values it takes, when they are a fixed set.
    pub values: Vec<String>,
    pub help: String,
}

/// The README's configuration reference: what is between its markers.
pub fn markdown(flags: &[Flag]) -> String {
    let mut out = format!(
        "`ballast serve` reads `{DEFAULT_CONFIG}`, or the file `--config` or \
         `BALLAST_CONFIG` names; without that file the built-in defaults apply. \
         The whole file is checked at start: a bad one stops the daemon with a \
         message naming the file, the key and the problem.\n\n\
         - `ballast config check [--config FILE]` checks a file the same way without \
         a daemon, with what the daemon checks of the host at start (the host-path \
         roots and the socket group exist; each pool exists or can be made: its \
         parent directory exists, on btrfs for a btrfs pool, and a loop pool's mkfs \
         is installed), and prints what it sets \
         up: pools, the default pool, backup targets, trash retention. Run it \
         before restarting the daemon.\n\
         - `ballast config example` prints a commented file with every key, all \
         commented out so that the defaults apply: a starting point for \
         `{DEFAULT_CONFIG}`.\n\
         - `ballast config reference` prints this section, which is generated from \
         the code (a test keeps the two equal).\n\n\
         A typical file:\n\n```toml\n{EXAMPLE}```\n"
    );
    for section in SECTIONS {
        out += &format!("\n### {}\n\n{}\n\n", section.title, section.about);
        out += "| key | type | default | example | meaning |\n|---|---|---|---|---|\n";
        for key in keys(section.table) {
            let default = match key.default {
                Omitted::Required => "required".to_string(),
                Omitted::Value(v) => format!("`{v}`"),
                Omitted::Unset(what) => format!("unset: {what}"),
            };
            let row = [
                format!("`{}`", key.name),
                key.ty.name(),
                default,
                format!("`{}`", key.example),
                key.meaning.to_string(),
            ];
            out += &table_row(&row);
        }
    }
    out += "\nSizes take binary units: `512M`, `10G`, `1T`. Durations are like `30m`, \
            `24h`, `7d` or `1h30m`. Paths are absolute.\n";
    out += "\n### `ballast serve` flags\n\nEach flag can be set by its environment \
            variable instead; the flag wins.\n\n\
            | flag | environment | default | meaning |\n|---|---|---|---|\n";
    for f in flags {
        let mut help = f.help.clone();
        if !f.values.is_empty() {
            let values: Vec<String> = f.values.iter().map(|v| format!("`{v}`")).collect();
            help += &format!(". Values: {}", values.join(", "));
        }
        let row = [
            format!("`{}`", f.flag),
            f.env.as_ref().map_or("none".into(), |e| format!("`{e}`")),
            f.default.as_ref().map_or("none".into(), |d| format!("`{d}`")),
            help,
        ];
        out += &table_row(&row);
    }
    out
}

fn table_row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// The commented default file. Every setting is commented out, so the
/// file means the same as an empty one. A setting's line starts with `#`
/// and no space (`#key = value`, `#[[pool]]`), an explanation's with `# `
/// or is `#` alone: deleting the `#` of every setting's line uncomments
/// the whole file, and that file is valid too.
pub fn example_file() -> String {
    let mut out = format!(
        "# ballast.toml: the configuration of the ballast daemon (ballast serve).\n\
         #\n\
         # It is read from {DEFAULT_CONFIG}, or from the file --config or\n\
         # BALLAST_CONFIG names. Every setting below is commented out, so the\n\
         # built-in defaults apply; each shows the key's default, or an example\n\
         # where the key has none.\n\
         #\n\
         # A line \"#key = value\" (no space after the #) is a setting: delete the #\n\
         # to use it. A table header such as \"#[[pool]]\" holds the settings below\n\
         # it, up to the next header; repeat it for a second pool. Lines starting\n\
         # with \"# \" explain.\n\
         #\n\
         # Sizes take binary units (512M, 10G, 1T); durations are like 30m, 24h,\n\
         # 7d or 1h30m; paths are absolute.\n\
         #\n\
         # Run \"ballast config check\" to check this file as the daemon will;\n\
         # \"ballast config reference\" describes every key.\n"
    );
    for section in SECTIONS {
        out += &format!("\n# --- {} ---\n{}\n", plain(section.title), comment(section.about));
        if let Some(header) = section.table.header() {
            out += &format!("#{header}\n");
        }
        for key in keys(section.table) {
            out += &format!("\n{}", setting(key));
        }
    }
    out
}

/// A key's meaning, what leaving it out means, and the commented line.
fn setting(key: &Key) -> String {
    let (omitted, value) = match key.default {
        Omitted::Required => ("Required. An example:".to_string(), key.example),
        Omitted::Value(v) => (format!("Default: {v}."), v),
        Omitted::Unset(what) => (format!("Unset: {what}. An example:"), key.example),
    };
    format!("{}\n{}\n#{} = {value}\n", comment(key.meaning), comment(&omitted), key.name)
}

/// Markdown's code spans as plain text.
fn plain(text: &str) -> String {
    text.replace('`', "")
}

/// Markdown text as `# `-lines of at most 78 columns, code spans as
/// plain text. A code span (`-o pool=NAME`) is never split, nor is a
/// word longer than a line.
fn comment(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut in_code = false;
    for word in text.split_whitespace() {
        match words.last_mut() {
            Some(last) if in_code => *last = format!("{last} {word}"),
            _ => words.push(word.to_string()),
        }
        in_code ^= word.matches('`').count() % 2 == 1;
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::from("#");
    for word in words.iter().map(|w| plain(w)) {
        if line.len() > 1 && line.chars().count() + 1 + word.chars().count() > 78 {
            lines.push(std::mem::replace(&mut line, String::from("#")));
        }
        line.push(' ');
        line.push_str(&word);
    }
    lines.push(line);
    lines.join("\n")
}
