//! The layering rules of the README's "Layout", held by reading the
//! sources: the core imports no adapter, the CLI reaches the daemon over
//! HTTP only, and `unsafe` code lives in `src/sys/` alone.
//!
//! The scan is a small lexer, not a parser: comments, strings and
//! character literals are blanked out, then every `crate::`, `super::` and
//! `self::` path is resolved to the top-level module it reaches (grouped
//! imports such as `use crate::{admin, core}` included). A `super::` is
//! resolved from the file's module, not from an inline module within it,
//! which can only resolve it higher up: towards reporting, never past a
//! module.

use std::path::{Path, PathBuf};

use crate::tests::files;

/// Adapters and the daemon around them: what the core must not know.
const ADAPTERS: &[&str] = &["admin", "docker", "cli", "serve", "listen"];

/// The domain the CLI must not call into: it asks the daemon instead.
const DOMAIN: &[&str] = &["core", "store", "pool"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Rust files under `dir` (relative to the crate's root).
fn rust_files(dir: &str) -> Vec<PathBuf> {
    let mut found: Vec<_> = files(&root().join(dir))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    found.sort();
    found
}

fn shown(file: &Path) -> String {
    file.strip_prefix(root()).unwrap_or(file).display().to_string()
}

/// `text` with comments, strings and character literals replaced by
/// spaces, newlines kept (so that line numbers still hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let after_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if let Some((start, hashes)) = raw_string(&chars, i).filter(|_| !after_ident) {
            // A raw string: ends at a quote followed by as many `#`.
            i = start + hashes + 1;
            while i < chars.len() {
                let closes = chars[i] == '"'
                    && chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes;
                blank(&mut out, chars[i]);
                i += 1;
                if closes {
                    i += hashes;
                    break;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if let Some(&c) = chars.get(i) {
                    blank(&mut out, c);
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A character literal (a lifetime has no closing quote).
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether a raw string (`r"…"`, `br#"…"#`) opens at `i`: where its `#`s
/// start, and how many there are.
fn raw_string(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let start = match (chars[i], chars.get(i + 1)) {
        ('r', _) => i + 1,
        ('b', Some('r')) => i + 2,
        _ => return None,
    };
    let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
    (chars.get(start + hashes) == Some(&'"')).then_some((start, hashes))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The module path of a source file: `src/core/mod.rs` is `core`,
/// `src/core/create.rs` is `core::create`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root().join("src")).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Every top-level module of the crate that `code` (already
/// [`code_only`]) names by path, with the line it is named on.
fn modules_reached(module: &[String], code: &str) -> Vec<(String, usize)> {
    // Whitespace dropped, so that `crate :: {\n admin }` reads as one path,
    // but for one space between two words (`use super`); each character
    // kept remembers its line.
    let (mut s, mut lines) = (Vec::<char>::new(), Vec::new());
    for (n, line) in code.lines().enumerate() {
        let mut spaced = true;
        for c in line.chars() {
            if c.is_whitespace() {
                spaced = true;
                continue;
            }
            if spaced && is_ident(c) && s.last().is_some_and(|&l| is_ident(l)) {
                s.push(' ');
                lines.push(n + 1);
            }
            spaced = false;
            s.push(c);
            lines.push(n + 1);
        }
    }
    let starts_with =
        |at: usize, word: &str| word.chars().enumerate().all(|(k, w)| s.get(at + k) == Some(&w));
    let mut found = Vec::new();
    for at in 0..s.len() {
        if at > 0 && (is_ident(s[at - 1]) || s[at - 1] == ':') {
            continue;
        }
        let mut base: Vec<String> = if starts_with(at, "crate::") {
            Vec::new()
        } else if starts_with(at, "super::") || starts_with(at, "self::") {
            module.to_vec()
        } else {
            continue;
        };
        let mut i = at;
        if starts_with(i, "crate::") {
            i += "crate::".len();
        } else if starts_with(i, "self::") {
            i += "self::".len();
        }
        while starts_with(i, "super::") {
            base.pop();
            i += "super::".len();
        }
        // Within a top-level module already: that is the one reached.
        if let Some(top) = base.first() {
            found.push((top.clone(), lines[at]));
            continue;
        }
        let segment = |from: usize| s[from..].iter().take_while(|&&c| is_ident(c)).collect();
        if s.get(i) == Some(&'{') {
            // A group: the first segment of each of its top-level items.
            let mut depth = 0;
            let mut item_start = true;
            for j in i..s.len() {
                match s[j] {
                    '{' => {
                        depth += 1;
                        item_start = depth == 1;
                        continue;
                    }
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if item_start && depth == 1 {
                    found.push((segment(j), lines[j]));
                    item_start = false;
                }
            }
        } else {
            found.push((segment(i), lines[at]));
        }
    }
    found
}

/// Each place in the Rust files under `dir` that reaches one of `banned`.
fn reaches(dir: &str, banned: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for file in rust_files(dir) {
        let text = std::fs::read_to_string(&file).expect("read");
        for (top, line) in modules_reached(&module_of(&file), &code_only(&text)) {
            if banned.contains(&top.as_str()) {
                hits.push(format!("{}:{line}: crate::{top}", shown(&file)));
            }
        }
    }
    hits
}

/// The lines of `code` (already [`code_only`]) with the `unsafe` keyword.
fn unsafe_lines(code: &str) -> Vec<usize> {
    let chars: Vec<char> = code.chars().collect();
    let mut line = 1;
    let mut found = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '\n' {
            line += 1;
        }
        let word = chars[i..].iter().take(6).collect::<String>() == "unsafe";
        let alone =
            (i == 0 || !is_ident(chars[i - 1])) && chars.get(i + 6).is_none_or(|&c| !is_ident(c));
        if word && alone {
            found.push(line);
        }
    }
    found
}

#[test]
fn the_core_imports_no_adapter() {
    let hits = reaches("src/core", ADAPTERS);
    assert!(
        hits.is_empty(),
        "the core knows volumes and pools, not the protocols over it; move this to the \
         adapter or pass it in:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_cli_reaches_the_daemon_over_http_only() {
    let hits = reaches("src/cli", DOMAIN);
    assert!(
        hits.is_empty(),
        "the CLI asks the daemon over its admin API, never the domain in its own process:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_cluster_knows_neither_the_core_nor_storage_nor_adapters() {
    let mut banned = vec!["core", "store", "pool", "backup"];
    banned.extend(ADAPTERS);
    let hits = reaches("src/cluster", &banned);
    assert!(
        hits.is_empty(),
        "the cluster is reached through its trait; it knows etcd and mounts, not volumes' \
         storage nor the protocols:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_etcd_client_is_named_in_src_cluster_etcd_alone() {
    let mut hits = Vec::new();
    for file in rust_files("src") {
        if file.starts_with(root().join("src/cluster/etcd")) {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&file).expect("read"));
        for (i, line) in code.lines().enumerate() {
            if line.contains("etcd_client::") || line.contains("etcd_client:{") {
                hits.push(format!("{}:{}", shown(&file), i + 1));
            }
        }
    }
    assert!(hits.is_empty(), "etcd's types stay behind the Cluster trait:\n{}", hits.join("\n"));
}

#[test]
fn no_code_outside_src_sys_is_unsafe() {
    let sys = root().join("src/sys");
    let mut hits = Vec::new();
    for dir in ["src", "tests", "benches", "fuzz/src", "fuzz/fuzz_targets", "build.rs"] {
        for file in rust_files(dir).into_iter().filter(|f| !f.starts_with(&sys)) {
            let text = std::fs::read_to_string(&file).expect("read");
            for line in unsafe_lines(&code_only(&text)) {
                hits.push(format!("{}:{line}", shown(&file)));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "`unsafe` code belongs in src/sys/, behind a safe function with a `// SAFETY:` \
         comment:\n{}",
        hits.join("\n")
    );
}

#[test]
fn comments_strings_and_character_literals_are_not_code() {
    let text = "let a = \"unsafe { crate::admin }\"; // unsafe crate::cli\n\
                let b = r#\"say \"unsafe\"\"#; let q = '\"'; let l: &'static str = \"\";\n\
                /* unsafe /* nested */ crate::serve */ let c = unsafe_name;\n";
    let code = code_only(text);
    assert_eq!(code.lines().count(), 3, "{code}");
    assert!(unsafe_lines(&code).is_empty(), "{code}");
    assert!(modules_reached(&[], &code).is_empty(), "{code}");
    assert!(code.contains("'static"), "a lifetime is code: {code}");
    assert_eq!(unsafe_lines(&code_only("fn f() {\n    unsafe { g() }\n}")), [2]);
}

#[test]
fn grouped_relative_and_inline_paths_are_all_seen() {
    let module = ["core".to_string(), "create".to_string()];
    let code = code_only(
        "use crate::{\n    error::Error,\n    admin::{self, x},\n};\n\
         use super::super::docker::Plugin;\nuse super::locks;\n\
         fn f() { crate::serve::run(); self::g(); }\n",
    );
    let reached = modules_reached(&module, &code);
    let tops: Vec<&str> = reached.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tops, ["error", "admin", "docker", "core", "serve", "core"], "{reached:?}");
    let lines: Vec<usize> = reached.iter().map(|(_, l)| *l).collect();
    assert_eq!(lines, [2, 3, 5, 6, 7, 7]);
}
