//! The checkpointer: copies the WAL back into the database on its own thread and connection,
//! so the writer never stalls behind a checkpoint (SQLite's automatic checkpoints run inside
//! the committing transaction; made rarer there, they showed up as 30+ ms p99 spikes).

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// Measured (docs/BENCHMARKS.md): every 2 s beat every 250 ms on throughput and SQLite's
/// in-commit checkpoints on p99; the WAL grows to at most ~2 s of writes in between.
const EVERY: Duration = Duration::from_secs(2);

/// A running checkpointer; stops when dropped.
pub(super) struct Checkpointer {
    /// Dropping it wakes and stops the thread at once.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `conn`'s database every `EVERY`.
    pub fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hookd-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    // PASSIVE never waits for the writer or readers; what it cannot copy now
                    // it copies next time.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("checkpoint failed: {e}");
                    }
                }
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
