//! The error every command and the receive path return. `http::error` maps it to a response;
//! nothing else decides status codes.

use crate::store::StoreError;

/// What went wrong with a request, worded for the person who sent it.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// A parameter is missing, unknown, of the wrong type or out of range.
    #[error("{0}")]
    InvalidParam(String),
    /// The request as a whole cannot be processed (e.g. a malformed multipart body).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that match no token.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token whose role is too low for the command.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist (or must not be revealed).
    #[error("{0}")]
    NotFound(String),
    /// No command by that name.
    #[error("unknown command '{0}'; command.list describes every command")]
    UnknownCommand(String),
    /// The HTTP method is not accepted here.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body exceeds a configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The client sent too slowly.
    #[error("{0}")]
    Timeout(String),
    /// Over a rate limit; retry after this many seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// The store could not commit; nothing was stored.
    #[error("{0}")]
    Unavailable(String),
    /// Too much is queued; retry after this many seconds.
    #[error("{message}")]
    Overloaded { message: String, retry_after: u64 },
    /// A bug or an I/O failure the caller cannot fix.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => {
                Error::Unavailable("hookd is shutting down; retry shortly".into())
            }
            StoreError::Commit(msg) => Error::Unavailable(format!(
                "the database could not commit ({msg}); nothing was stored"
            )),
            StoreError::NotFound(msg) => Error::NotFound(msg),
            StoreError::Busy(message) => Error::Overloaded {
                message,
                retry_after: 1,
            },
            StoreError::Invalid(msg) => Error::InvalidParam(msg),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("I/O error: {e}"))
    }
}
