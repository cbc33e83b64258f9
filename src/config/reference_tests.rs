//! The description of the keys held to the parser both ways, and the
//! example file to its promise (it changes nothing; uncommented, it is
//! valid).

use std::collections::BTreeSet;
use std::path::Path;

use super::reference::{EXAMPLE, KEYS, Key, Omitted, SECTIONS, Table, Ty, keys};
use super::{Config, example_file};

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("/var/lib/ballast"))
}

/// A file with one instance of each table (or of `only`), holding the
/// keys `value` gives a value.
fn file(only: Option<Table>, value: impl Fn(&Key) -> Option<String>) -> String {
    let mut out = String::new();
    for section in SECTIONS.iter().filter(|s| only.is_none_or(|t| t == s.table)) {
        if let Some(header) = section.table.header() {
            out += &format!("{header}\n");
        }
        for key in keys(section.table) {
            if let Some(v) = value(key) {
                out += &format!("{} = {v}\n", key.name);
            }
        }
    }
    out
}

/// The smallest valid instance of `key`'s table (its required keys with
/// their examples), with `key` set to `value` if given.
fn minimal_with(key: &Key, value: Option<&str>) -> String {
    file(Some(key.table), |k| {
        if k.name == key.name {
            value.map(str::to_string)
        } else {
            (k.default == Omitted::Required).then(|| k.example.to_string())
        }
    })
}

#[test]
fn every_documented_key_is_accepted_with_its_example() {
    // The cluster's table apart: in a cluster, the example pool (a loop
    // pool of scope global) is refused, as a loop image cannot be shared.
    let text = file(None, |k| (k.table != Table::Cluster).then(|| k.example.to_string()))
        .replace("[cluster]\n", "");
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Each example took effect, not only parsed: spot checks per table.
    assert_eq!(config.admin.socket_group.as_deref(), Some("docker"));
    assert_eq!(config.pools[0].overcommit, 1.5);
    assert_eq!(config.backup_targets[0].keep_weekly, Some(8));
    assert_eq!(config.host_path_roots, [Path::new("/srv")]);
    let text = file(Some(Table::Cluster), |k| Some(k.example.to_string()));
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.cluster.unwrap().node, "node-a");
    let refused = parse(&file(None, |k| Some(k.example.to_string()))).unwrap_err();
    assert!(refused.contains("only a dir pool can be shared"), "{refused}");
}

/// The keys the parser accepts in `table`, from serde's refusal of an
/// unknown one: "unknown field `x`, expected one of `a`, `b`".
fn accepted(table: Table) -> BTreeSet<String> {
    let header = table.header().map(|h| format!("{h}\n")).unwrap_or_default();
    let err = parse(&format!("{header}no_such_key = 1\n")).unwrap_err();
    let list = err
        .lines()
        .find_map(|l| l.split_once("unknown field `no_such_key`, expected ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no list of fields in: {err}"));
    let list = list.strip_prefix("one of ").unwrap_or(list);
    list.split(", ").map(|k| k.trim_matches('`').to_string()).collect()
}

#[test]
fn every_key_the_parser_accepts_is_documented_and_no_other() {
    for section in SECTIONS {
        let mut documented: BTreeSet<String> =
            keys(section.table).map(|k| k.name.to_string()).collect();
        if section.table == Table::Top {
            documented.extend(SECTIONS.iter().filter_map(|s| s.table.key()).map(String::from));
        }
        let accepted = accepted(section.table);
        let missing: Vec<_> = accepted.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&accepted).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: accepted but not documented: {missing:?}; documented but refused: {extra:?}",
            section.title
        );
    }
}

/// `minimal_with`, and for a table that repeats (pools, targets) a
/// second, differently named instance after it that alone gets `value`:
/// a first pool is the default whatever its `default` says, a second one
/// is not unless it says `true`.
fn minimal_with_a_second(key: &Key, value: Option<&str>) -> String {
    let Some(name) = keys(key.table).find(|k| k.name == "name") else {
        return minimal_with(key, value);
    };
    let first = format!("name = {}\n", name.example);
    let second = minimal_with(key, value).replacen(&first, "name = \"second\"\n", 1);
    minimal_with(key, None) + &second
}

#[test]
fn documented_defaults_are_what_the_parser_applies() {
    for key in KEYS {
        let Omitted::Value(default) = key.default else { continue };
        let without = minimal_with_a_second(key, None);
        let with = minimal_with_a_second(key, Some(default));
        assert_eq!(
            parse(&with).unwrap_or_else(|e| panic!("{e}\n{with}")),
            parse(&without).unwrap(),
            "{}: writing the documented default changes the config",
            key.name
        );
        // And the example is not the default: it shows a change.
        assert_ne!(key.example, default, "{}: the example is the default", key.name);
    }
}

#[test]
fn documented_options_are_the_ones_accepted() {
    for key in KEYS {
        let Ty::Enum(options) = key.ty else { continue };
        for option in options {
            let text = minimal_with(key, Some(&format!("{option:?}")));
            parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", key.name));
        }
        let err = parse(&minimal_with(key, Some("\"no-such-option\""))).unwrap_err();
        assert!(err.contains(&format!("key `{}`", key.name)), "{}: {err}", key.name);
    }
}

#[test]
fn required_keys_are_required() {
    for key in KEYS.iter().filter(|k| k.default == Omitted::Required) {
        let err = parse(&minimal_with(key, None)).unwrap_err();
        assert!(err.contains(&format!("missing field `{}`", key.name)), "{}: {err}", key.name);
    }
}

#[test]
fn the_example_file_means_the_same_as_an_empty_one() {
    let example = example_file();
    assert_eq!(parse(&example).unwrap(), parse("").unwrap(), "{example}");
}

/// Deletes the `#` of every setting's line: a `#` with no space after it.
fn uncomment(file: &str) -> String {
    let lines = file.lines().map(|l| match l.strip_prefix('#') {
        Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => rest,
        _ => l,
    });
    lines.map(|l| format!("{l}\n")).collect()
}

#[test]
fn the_example_file_uncommented_sets_every_key_and_is_valid() {
    let uncommented = uncomment(&example_file());
    let config = parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(config.pools[0].name, "fast");
    assert_eq!(config.backup_targets.len(), 1);
    let settings: Vec<&str> =
        uncommented.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let headers = SECTIONS.iter().filter(|s| s.table.header().is_some()).count();
    assert_eq!(settings.len(), KEYS.len() + headers, "{settings:#?}");
}

#[test]
fn the_example_file_reads_in_a_terminal() {
    for line in example_file().lines() {
        assert!(line.chars().count() <= 80, "too long: {line:?}");
        assert!(line.is_empty() || line.starts_with('#'), "not commented out: {line:?}");
    }
}

#[test]
fn the_short_example_is_valid() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.default_pool().name, "fast");
    assert_eq!(config.pools.len(), 2);
}

#[test]
fn the_reference_has_a_row_per_key() {
    let md = super::markdown(&[]);
    for key in KEYS {
        assert!(md.contains(&format!("| `{}` | {} |", key.name, key.ty.name())), "{}", key.name);
    }
    for section in SECTIONS {
        assert!(md.contains(&format!("\n### {}\n", section.title)), "{}", section.title);
    }
}
