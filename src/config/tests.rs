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

/// The file holds credentials, and its errors reach terminals and the
/// daemon's log: a mistake next to a secret must not print the secret,
/// yet still say where it is and what is wrong.
#[test]
fn syntax_errors_say_where_and_what_but_never_quote_the_file() {
    let admin = "[admin]\naccess_key = \"ops\"\n";
    let cases = [
        ("secret_kye = \"wJalrXUtnFEMI\"", "wJalrXUtnFEMI", "line 3, column 1, in `admin`"),
        ("secret_key = \"pa\\ss-wJalr\"", "wJalr", "line 3, column 18: missing escaped value"),
        ("secret_key = 12345678", "12345678", "line 3, column 14, in `admin.secret_key`"),
        ("secret_key = \"unterminated-wJalr", "wJalr", "line 3, column 33: invalid basic"),
        ("secret_key = wJalr-unquoted", "wJalr", "line 3, column 14: string values must"),
    ];
    for (line, secret, place) in cases {
        let text = format!("{admin}{line}\n");
        let err = parse(&text).unwrap_err();
        assert!(!err.contains(secret), "{line:?}: the secret shown: {err}");
        assert!(err.starts_with(place), "{line:?}: {err}");
    }
    // serde's messages quote the value; the kind of value is enough.
    let err = parse(&format!("{admin}secret_key = 12345678\n")).unwrap_err();
    assert!(err.ends_with(": invalid type: integer, expected a string"), "{err}");
    let err =
        parse("[[pool]]\nname = \"a\"\nbackend = \"dir\"\novercommit = \"x1y\"\n").unwrap_err();
    assert!(err.contains("`pool.overcommit`: invalid type: string, expected f64"), "{err}");
    assert!(!err.contains("x1y"), "{err}");
}

/// `ballast config check` prints a target's URL and endpoint: credentials
/// written into them would be printed too, so they are refused, and the
/// refusal does not repeat them either.
#[test]
fn credentials_in_a_target_url_are_refused_without_being_shown() {
    let target = "[[backup_target]]\nname = \"offsite\"\n";
    for setting in [
        "url = \"s3://AKIAX:topsecret@bucket/prefix\"",
        "url = \"s3://topsecret@bucket\"",
        "url = \"s3://b/p\"\nendpoint = \"https://AKIAX:topsecret@s3.example.net\"",
    ] {
        let err = parse(&format!("{target}{setting}\n")).unwrap_err();
        assert!(err.contains("credentials do not go in the URL"), "{setting}: {err}");
        assert!(err.contains("`access_key` and `secret_key`"), "{setting}: {err}");
        assert!(!err.contains("topsecret") && !err.contains("AKIAX"), "{setting}: {err}");
    }
    // An `@` in the prefix is a path, not credentials.
    let config = parse(&format!("{target}url = \"s3://bucket/team@site\"\n")).unwrap();
    assert_eq!(config.backup_targets[0].url, "s3://bucket/team@site");
    let err = parse(&format!("{target}url = \"https://AKIAX:topsecret@host/b\"\n")).unwrap_err();
    assert!(err.contains("key `url`") && !err.contains("topsecret"), "{err}");
}
