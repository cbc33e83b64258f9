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
        let log = e.display_log();
        let why = log.strip_prefix("Error: ").unwrap_or(&log);
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
    // C001: a MAC did not verify; C003: data changed on its way back.
    let corrupt = ["code: C001", "code: C003", "related to verification", "may be corrupted"];
    if corrupt.iter().any(|c| log.contains(c)) {
        Class::Corrupt
    } else if log.contains("related to the backend") {
        Class::Unreachable
    } else {
        Class::Other
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
