//! Reader threads: each owns a read-only connection and runs queries sent to it. WAL lets them
//! read while the writer commits. The queue is bounded like the writer's: at most `capacity`
//! queries are queued or running; past that a request's query is refused at once (503 with
//! Retry-After), and background work waits for room, so a flood of reads cannot grow memory.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::StoreError;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A fixed set of reader threads fed by one queue.
pub(super) struct Pool {
    tx: Sender<ReadJob>,
    /// One permit per query queued or running.
    room: Arc<Semaphore>,
}

impl Pool {
    /// Starts `n` threads, each with a connection from `open`.
    pub fn start(
        n: usize,
        capacity: usize,
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
        Ok(Pool {
            tx,
            room: Arc::new(Semaphore::new(capacity)),
        })
    }

    /// Runs `f` on a reader thread and awaits its result; `Busy` at once if the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self.room.clone().try_acquire_owned().map_err(|_| {
            StoreError::Busy("too many queries are waiting for the database; retry shortly".into())
        })?;
        self.send(permit, f).await
    }

    /// Like [`Pool::run`], but waits for room in the queue instead of refusing.
    pub async fn run_waiting<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        self.send(permit, f).await
    }

    async fn send<T, F>(&self, permit: OwnedSemaphorePermit, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
                // Room again only once the query has run.
                drop(permit);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// With its one reader held and its queue full, a request's query is refused at once, a
    /// background one waits, and both kinds run again once there is room.
    #[tokio::test]
    async fn a_full_queue_refuses_requests_and_holds_background_work() {
        let pool = Arc::new(Pool::start(1, 3, || Ok(Connection::open_in_memory()?)).expect("pool"));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let mut queued = Vec::new();
        for _ in 0..3 {
            let (pool, held) = (pool.clone(), held.clone());
            queued.push(tokio::spawn(async move {
                pool.run(move |_| {
                    let _ = held.lock().map(|h| h.recv());
                    Ok(1)
                })
                .await
            }));
        }
        // A query sent before all three hold their permits would queue behind the held one and
        // never return: wait for the permits to be taken, without sending anything.
        while pool.room.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|_| Ok(0)).await.expect_err("a full queue refuses");
        assert!(matches!(refused, StoreError::Busy(_)), "{refused}");
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run_waiting(|_| Ok(2)).await })
        };
        for _ in 0..3 {
            release.send(()).expect("release");
        }
        for q in queued {
            assert_eq!(q.await.expect("task").expect("query"), 1);
        }
        assert_eq!(waiting.await.expect("task").expect("query"), 2);
        assert_eq!(pool.run(|_| Ok(3)).await.expect("room again"), 3);
    }
}
