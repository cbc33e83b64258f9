//! The configuration reference, the file's keys (from `config`) and these
//! flags (from clap), and the README's copy of it held equal to the code.
//! It is put together here because `serve` is where both halves are
//! known: `config` is a leaf and cannot read `serve`'s flags.

use clap::Args;

use super::ServeArgs;
use crate::config::{self, Flag};

/// The README's configuration reference, as `ballast config reference`
/// prints it.
pub fn configuration_reference() -> String {
    config::markdown(&flags())
}

/// `ballast serve`'s flags, read from their clap definitions.
pub fn flags() -> Vec<Flag> {
    let command = ServeArgs::augment_args(clap::Command::new("serve"));
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            // A default clap cannot apply (the config's default file may
            // be missing) is written in the help, in clap's own notation.
            let (help, written_default) = match help.strip_suffix(']').and_then(|h| {
                h.split_once(" [default: ").map(|(h, d)| (h.to_string(), d.to_string()))
            }) {
                Some((help, default)) => (help, Some(default)),
                None => (help, None),
            };
            let defaults: Vec<String> =
                a.get_default_values().iter().map(|v| v.to_string_lossy().into()).collect();
            let default =
                if defaults.is_empty() { written_default } else { Some(defaults.join(",")) };
            Some(Flag {
                flag: format!("--{long}"),
                env: a.get_env().map(|e| e.to_string_lossy().into()),
                default,
                values: a.get_possible_values().iter().map(|v| v.get_name().to_string()).collect(),
                help,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BEGIN: &str = "<!-- config-reference:begin -->\n";
    const END: &str = "<!-- config-reference:end -->";

    /// The README's section must be exactly what the code generates. Run
    /// with `BALLAST_BLESS=1` to write the generated one into README.md.
    #[test]
    fn readme_configuration_reference_is_the_generated_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let start = readme.find(BEGIN).expect("README.md has the begin marker") + BEGIN.len();
        let end = start + readme[start..].find(END).expect("README.md has the end marker");
        let (written, generated) = (&readme[start..end], configuration_reference());
        if written == generated {
            return;
        }
        if std::env::var_os("BALLAST_BLESS").is_some_and(|v| v == "1") {
            let blessed = format!("{}{generated}{}", &readme[..start], &readme[end..]);
            std::fs::write(&path, blessed).unwrap();
            eprintln!("rewrote the configuration reference in {}", path.display());
            return;
        }
        let first = written
            .lines()
            .zip(generated.lines())
            .position(|(w, g)| w != g)
            .unwrap_or(written.lines().count().min(generated.lines().count()));
        panic!(
            "README.md's configuration reference is not the one the code generates \
             (first difference at line {} of the section:\n  README:    {:?}\n  generated: {:?}).\n\
             Regenerate it: BALLAST_BLESS=1 cargo test --lib readme_configuration_reference",
            first + 1,
            written.lines().nth(first).unwrap_or("(end)"),
            generated.lines().nth(first).unwrap_or("(end)"),
        );
    }

    /// An "unset" default of the reference says what the code does
    /// without the key; where the code holds that as a value (a region, a
    /// path, a mode), the words must show that value, or a change of the
    /// code leaves the reference wrong with every other test passing.
    #[test]
    fn documented_unset_defaults_show_the_codes_values() {
        use crate::config::reference::{KEYS, Omitted, Table};
        use crate::config::{BackupTarget, Config};
        // Paths come out under it, and are shown as the reference writes them.
        let state = Path::new("/state-dir");
        let written = |p: &Path| format!("`{}`", p.display()).replace("/state-dir", "<state-dir>");
        let target = BackupTarget {
            name: "<name>".into(),
            url: "file:///b".into(),
            endpoint: None,
            region: None,
            access_key: None,
            secret_key: None,
            password_file: None,
            keep_last: None,
            keep_daily: None,
            keep_weekly: None,
        };
        let pool = Config::parse("[[pool]]\nname = \"fast\"\nbackend = \"dir\"\n", state).unwrap();
        for key in KEYS {
            let Omitted::Unset(words) = key.default else { continue };
            let shown = match (key.table, key.name) {
                (Table::Admin, "access_key" | "secret_key") => {
                    // `ballast config check` says the same of a file without them.
                    let summary = Config::parse("", state).unwrap().summary();
                    assert!(summary.contains(words), "{}: {words:?} in {summary}", key.name);
                    continue;
                }
                (Table::Admin, "tls_cert" | "tls_key") => {
                    // Without them: plain HTTP, and on loopback alone.
                    let admin = Config::parse("", state).unwrap().admin;
                    let plain = super::super::tls::for_listener("127.0.0.1:0", &admin);
                    assert!(plain.unwrap().is_none(), "{}", key.name);
                    assert!(super::super::tls::for_listener("0.0.0.0:0", &admin).is_err());
                    continue;
                }
                (Table::Admin, "socket_group") => format!("mode {:04o}", super::super::SOCKET_MODE),
                (Table::Pool, "path") => written(&pool.pools[0].path).replace("fast", "<name>"),
                (Table::BackupTarget, "endpoint") => {
                    format!("`{}`", crate::backup::s3::aws_endpoint("<region>"))
                }
                (Table::BackupTarget, "region") => {
                    format!("`{}`", crate::backup::s3::DEFAULT_REGION)
                }
                (Table::BackupTarget, "access_key") => {
                    format!("`{}`", crate::backup::s3::ACCESS_KEY_VAR)
                }
                (Table::BackupTarget, "secret_key") => {
                    format!("`{}`", crate::backup::s3::SECRET_KEY_VAR)
                }
                (Table::BackupTarget, "password_file") => {
                    written(&crate::backup::key::generated_path(&target, state).unwrap())
                }
                (Table::Cluster, "node") => {
                    let text = "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n";
                    let node = Config::parse(text, state).unwrap().cluster.unwrap().node;
                    assert_eq!(node, crate::config::host_name().unwrap());
                    continue;
                }
                // No value: without them, etcd is asked with no password
                // and over TLS with the system's roots and no client key.
                (Table::Cluster, "user" | "password" | "ca_file" | "cert_file" | "key_file") => {
                    continue;
                }
                // No value: without any of them, nothing is forgotten.
                (Table::BackupTarget, "keep_last" | "keep_daily" | "keep_weekly") => continue,
                _ => panic!("{}: an unset default that no test holds to the code", key.name),
            };
            assert!(words.contains(&shown), "{}: {words:?} should show {shown:?}", key.name);
        }
    }

    #[test]
    fn the_flags_are_serves_with_their_variables_and_defaults() {
        let flags = flags();
        let config = flags.iter().find(|f| f.flag == "--config").unwrap();
        assert_eq!(config.env.as_deref(), Some("BALLAST_CONFIG"));
        assert_eq!(config.default.as_deref(), Some(crate::config::DEFAULT_CONFIG));
        assert!(!config.help.contains("[default"), "{}", config.help);
        let log = flags.iter().find(|f| f.flag == "--log-format").unwrap();
        assert_eq!(log.default.as_deref(), Some("text"));
        assert_eq!(log.values, ["text", "json"]);
        for flag in &flags {
            assert!(flag.env.as_deref().is_some_and(|e| e.starts_with("BALLAST_")), "{flag:?}");
            assert!(!flag.help.is_empty(), "{flag:?}");
        }
    }
}
