//! A TOML error as the operator sees it: where (line, column, key) and
//! what, never the text of the file. The file holds credentials, and
//! `toml`'s own rendering quotes the offending line, which may be the
//! secret itself (a misspelt `secret_kye`, a bad escape, a number where a
//! string goes); serde's messages quote the offending value too.

/// `line 3, column 14, in `admin.secret_key`: invalid type: integer,
/// expected a string`.
pub(super) fn describe(text: &str, error: &toml::de::Error) -> String {
    let mut out = String::new();
    if let Some(span) = error.span() {
        let (line, column) = position(text, span.start);
        out += &format!("line {line}, column {column}");
    }
    if let Some(keys) = keys(error) {
        out += &format!("{}in `{keys}`", if out.is_empty() { "" } else { ", " });
    }
    let message = without_values(error.message().trim_end());
    if out.is_empty() { message } else { format!("{out}: {message}") }
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// The dotted key the error is about, which `toml` shows only when it has
/// no text to quote (its last line then reads "in `admin.secret_key`").
fn keys(error: &toml::de::Error) -> Option<String> {
    let mut bare = error.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let last = shown.trim_end().lines().last()?;
    Some(last.strip_prefix("in `")?.strip_suffix('`')?.to_string())
}

/// serde's "invalid type: integer `12345678`, expected a string" without
/// the value: "invalid type: integer, expected a string". The same for
/// invalid values and unknown variants, whose values come from the file.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(i) = rest.rfind(", expected ")
        {
            // "integer `5`", "string \"x\"", "floating point `1.5`": the
            // kind comes before the first quote.
            let kind = rest[..i].split(['`', '"']).next().unwrap_or_default().trim_end();
            return format!("{prefix}{kind}{}", &rest[i..]);
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ")
        && let Some(i) = rest.rfind(", expected ")
    {
        return format!("unknown value{}", &rest[i..]);
    }
    message.to_string()
}
