//! rustic's errors and panics, turned into [`Error`]s that say what
//! failed in words a user can act on.
//!
//! `RusticError` exposes no kind accessor, only its texts; the mapping
//! reads the log line (`... (kind: related to the backend, code: C001)`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use rustic_core::RusticError;

use super::Error;

/// Which target an error is about (never its credentials).
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub name: String,
    pub url: String,
}

impl Target {
    /// Maps an error of an operation on this target: `doing` says what
    /// (`"backup of volume v"`, `"restore of backup 1a2b3c4d"`).
    pub fn error(&self, doing: &str, e: &RusticError) -> Error {
        let why = describe(e);
        let why = why.as_str();
        match classify(e) {
            Class::Corrupt => Error::Corrupt(format!(
                "{doing} on backup target {}: data read back from {} does not match what was \
                 written (corruption or tampering): {why}",
                self.name, self.url
            )),
            Class::Unreachable => Error::Unavailable(format!(
                "{doing} on backup target {}: cannot reach the repository at {}: {why}",
                self.name, self.url
            )),
            Class::Other => Error::Failed(format!("{doing} on backup target {}: {why}", self.name)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Class {
    Corrupt,
    Unreachable,
    Other,
}

pub(super) fn classify(e: &RusticError) -> Class {
    let log = e.display_log();
    // C001: a MAC did not verify (the code shows as a docs link when the
    // error is another's cause); C003: data changed on its way back.
    let corrupt = [
        "code: C001",
        "errors/C001",
        "code: C003",
        "errors/C003",
        "related to cryptographic operations",
        "related to verification",
        "may be corrupted",
    ];
    if corrupt.iter().any(|c| log.contains(c)) {
        Class::Corrupt
    } else if log.contains("related to the backend") {
        Class::Unreachable
    } else {
        Class::Other
    }
}

/// One line about `e`: its message and its cause's, without rustic's
/// kind, docs links and backtraces.
pub(super) fn describe(e: &RusticError) -> String {
    let log = e.display_log();
    let log = log.strip_prefix("Error: ").unwrap_or(&log);
    let (head, cause) = match log.split_once(": caused by: ") {
        Some((head, cause)) => (head, Some(cause)),
        None => (log, None),
    };
    let head = match head.rfind(" (kind: related to") {
        Some(i) => &head[..i],
        None => head,
    };
    match cause {
        None => head.to_string(),
        Some(cause) => format!("{head}: {}", one_line(cause)),
    }
}

/// The gist of a text that may be a whole rustic error report (a first
/// line naming the error's kind, its message after `Message:`, then
/// context and a backtrace).
pub(super) fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let first = match first.find("`rustic_core` experienced") {
        Some(i) => first[..i].trim_end().trim_end_matches(':').trim_end(),
        None => first,
    };
    match text.find("Message:\n") {
        Some(i) => {
            let message = text[i + "Message:\n".len()..].lines().next().unwrap_or("");
            if first.is_empty() { message.to_string() } else { format!("{first}: {message}") }
        }
        None => first.to_string(),
    }
}

/// Runs `f`, turning a panic into its message: rustic unwraps some errors
/// inside its worker threads (a pack that fails to decrypt while
/// restoring, a local write that fails), and a daemon must not go down
/// with them.
pub(super) fn unwind<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else {
            "an internal error (panic without a message)".to_string()
        }
    })
}

/// Whether a panic came from reading the repository (a `RusticError`
/// unwrapped) rather than from writing locally.
pub(super) fn panic_read_repository(msg: &str) -> bool {
    msg.contains("RusticError")
}

/// The first line of a panic's message, short enough for a user.
pub(super) fn panic_summary(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or(msg);
    line.chars().take(300).collect()
}

/// `text` (a message about an entry below `root`) fit for a user: paths
/// below `root` made relative to it and `root` itself never shown (a host
/// path). A path longer than 100 characters (a tree deeper than
/// PATH_MAX, whose error repeats its path in thousands of characters)
/// makes the message its first 100 characters, its depth and the error's
/// last words; any other message is cut at 300 characters.
pub(super) fn below(text: &str, root: &std::path::Path) -> String {
    let root = root.display().to_string();
    let text = text.replace(&format!("{root}/"), "").replace(&root, ".");
    let is_word = |c: char| !c.is_whitespace() && !matches!(c, '"' | '`' | '\'' | ',');
    let long = text
        .split(|c: char| !is_word(c))
        .map(|w| w.trim_end_matches(':'))
        .find(|w| w.contains('/') && w.chars().count() > 100);
    if let Some(path) = long {
        let prefix: String = path.chars().take(100).collect();
        let depth = path.matches('/').count() + 1;
        let last = text.rsplit(": ").next().unwrap_or_default();
        let last = last.trim_end_matches([')', '}', '`', ' ', '"']);
        let last = if last.contains('(') && !last.ends_with(')') {
            format!("{last})")
        } else {
            last.into()
        };
        return format!("{prefix}… (depth {depth}): {last}");
    }
    if text.chars().count() > 300 {
        return text.chars().take(300).chain(['…']).collect();
    }
    text
}
