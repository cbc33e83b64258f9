//! The parser's rules: defaults and the errors that name key and problem.

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("/var/lib/ballast"))
}

#[test]
fn empty_config_is_one_default_dir_pool() {
    let c = parse("").unwrap();
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.default_pool().name, "default");
    assert_eq!(c.default_pool().path, Path::new("/var/lib/ballast/pools/default"));
    assert_eq!(c.trash_retention, Duration::from_secs(86400));
}

#[test]
fn errors_name_the_key_and_problem() {
    let cases = [
        ("trash_retention = \"soon\"", "trash_retention"),
        ("[[pool]]\nname = \"a\"\nbackend = \"zfs\"", "unknown backend \"zfs\""),
        (
            "[[pool]]\nname = \"a\"\nbackend = \"dir\"\n[[pool]]\nname = \"a\"\nbackend = \"dir\"",
            "already named",
        ),
        (
            "[[pool]]\nname = \"a\"\nbackend = \"dir\"\ndefault = true\n[[pool]]\nname = \"b\"\nbackend = \"dir\"\ndefault = true",
            "more than one pool",
        ),
        ("[[pool]]\nname = \"../x\"\nbackend = \"dir\"", "key `name`"),
        ("[[pool]]\nname = \"a\"\nbackend = \"dir\"\npath = \"rel\"", "absolute"),
        ("colour = 1", "colour"),
        ("[admin]\naccess_key = \"k\"", "set together"),
        ("[admin]\naccess_key = \"\"\nsecret_key = \"s\"", "key `access_key` is empty"),
        ("[admin]\naccess_key = \"k\"\nsecret_key = \"\"", "key `secret_key` is empty"),
        ("[admin]\naccess_key = \" \"\nsecret_key = \"s\"", "key `access_key` is empty"),
        ("[[backup_target]]\nname = \"nas\"\nurl = \"ftp://x\"", "key `url`"),
        (
            "[[backup_target]]\nname = \"nas\"\nurl = \"file:///b\"\nkeep_last = 0",
            "key `keep_last`: 0 would forget every backup",
        ),
    ];
    for (text, needle) in cases {
        let err = parse(text).unwrap_err();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}
