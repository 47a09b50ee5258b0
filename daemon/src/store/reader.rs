//! Reader threads: each owns a read-only connection and runs queries sent to it. WAL lets them
//! read while the writer commits.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A fixed set of reader threads fed by one queue.
pub(super) struct Pool {
    tx: Sender<ReadJob>,
}

impl Pool {
    /// Starts `n` threads, each with a connection from `open`.
    pub fn start(
        n: usize,
        open: impl Fn() -> Result<Connection, StoreError>,
    ) -> Result<Pool, StoreError> {
        let (tx, rx) = channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let conn = open()?;
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("hookd-reader-{i}"))
                .spawn(move || serve(conn, rx))?;
        }
        Ok(Pool { tx })
    }

    /// Runs `f` on a reader thread and awaits its result.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn serve(conn: Connection, rx: Arc<Mutex<Receiver<ReadJob>>>) {
    loop {
        // Hold the lock only while waiting, so another thread can take the next job.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&conn),
            Err(_) => return,
        }
    }
}
