//! What the store can fail with.

/// A failed store operation.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The backend failed (its own message).
    #[error("database error: {0}")]
    Database(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The batch's transaction did not commit: nothing in it was stored.
    #[error("{0}")]
    Commit(String),
    /// The writer or readers have stopped.
    #[error("the store is closed")]
    Closed,
    /// A row the operation needs does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation is not valid against the current state.
    #[error("{0}")]
    Invalid(String),
    /// A schema newer than this binary understands.
    #[error("{0}")]
    Schema(String),
    /// Too much is queued already; retry shortly (nothing was done).
    #[error("{0}")]
    Busy(String),
    /// Another process holds the data dir's lock.
    #[error(
        "another hookd is already using this data dir (it holds {}); stop it first, or give this one its own --data-dir",
        .0.display()
    )]
    InUse(std::path::PathBuf),
}

/// How long work that could not be recorded waits before writing again, given its last wait
/// (zero at first): 1 s, doubling up to 60 s. A store that cannot write (a full disk, say) is not
/// retried in a loop, and recovers within a minute once it can.
pub fn retry_pause(last: std::time::Duration) -> std::time::Duration {
    use std::time::Duration;
    (last * 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
}
