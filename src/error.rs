//! The domain error. Adapters map [`Error::kind`] to their own status codes
//! (Docker: `{"Err"}` bodies, admin: Rancher error codes) in one place each.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in words a user can act on. The `Display` text of each
/// variant is the message users see.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named volume (or other resource) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed: a bad name, an unknown option, a bad value.
    #[error("{0}")]
    InvalidInput(String),
    /// The request is valid but not in the resource's current state.
    #[error("{0}")]
    InvalidState(String),
    /// The volume still has `mounts` (an [`ErrorKind::InvalidState`]). It
    /// carries the volume's name so that an adapter that can ask Docker
    /// which containers mount it names them in `message`'s place.
    #[error("{message}")]
    InUse { volume: String, mounts: usize, message: String },
    /// A name is already taken by a different resource.
    #[error("{0}")]
    Conflict(String),
    /// Storage or metadata failed underneath us.
    #[error("{0}")]
    Internal(String),
}

/// The class of an [`Error`], for adapters that map it to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidInput,
    InvalidState,
    Conflict,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::InvalidState(_) | Error::InUse { .. } => ErrorKind::InvalidState,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// An internal error with the operation that failed named first.
    pub fn internal(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Error::internal("metadata store", err)
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Internal(err.to_string())
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(err: rustix::io::Errno) -> Self {
        Error::Internal(io::Error::from(err).to_string())
    }
}
