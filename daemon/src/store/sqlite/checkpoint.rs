//! The checkpointer: copies the WAL back into the database on its own thread and connection,
//! so the writer never stalls behind a checkpoint (SQLite's automatic checkpoints run inside
//! the committing transaction; made rarer there, they showed up as 30+ ms p99 spikes).
//!
//! It also keeps the WAL file from growing. SQLite writes the WAL from its start again only when
//! a write transaction begins with every frame already copied back, which a checkpoint running
//! beside a busy writer never achieves: new frames land while it copies. Under a steady load the
//! file grew by every write, and each write to new blocks paid for zeroing and allocating them (a
//! quarter of all samples with 31 KiB multipart bodies, docs/BENCHMARKS.md). So the checkpointer
//! copies in passes until a pass finds little new, and hands the rest to the writer, which copies
//! it between two batches; the next batch writes from the start of the file.
//!
//! Starting over needs the database file synced first. Synced in one go, the pages one cycle
//! copied (up to 64 MiB) held the writer's commit fsyncs for 25–35 ms; so after each pass the
//! checkpointer has them written back in small windows, and the final sync finds little left.

use std::fs::File;
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// Measured (docs/BENCHMARKS.md): every 2 s beat every 250 ms on throughput and SQLite's
/// in-commit checkpoints on p99.
const EVERY: Duration = Duration::from_secs(2);
/// WAL frames at which a commit wakes the checkpointer before `EVERY` is up: 64 MiB of 4 KiB
/// pages, below `journal_size_limit`, so the file is reused instead of regrown. Smaller cycles
/// (16 MiB) cost p99: the writer's share of each cycle is a short pause of its own.
pub(super) const EARLY_FRAMES: c_int = 16384;
/// A pass that found at most this many new frames ends a cycle: the writer's share is then
/// about as small (1 MiB), and so is its pause (~1 ms measured).
const TAIL_FRAMES: i64 = 256;
/// Passes before giving up on a cycle (a long-running reader can hold frames back).
const MAX_PASSES: usize = 8;

/// Whose turn it is to checkpoint: two checkpoints at once would make one of them fail busy.
const CHECKPOINTER: u8 = 0;
/// Only a short tail is left: the writer copies it before its next batch.
const WRITER: u8 = 1;

/// What the writer and the checkpointer share.
#[derive(Default)]
pub(super) struct Wrap {
    turn: AtomicU8,
    /// A wake-up is pending, so commits do not queue one each.
    woken: AtomicBool,
}

impl Wrap {
    /// The writer's part, between two batches (no transaction open): copies the tail the
    /// checkpointer left, so the next transaction starts the WAL over.
    pub fn before_batch(&self, writer: &Connection) {
        if self.turn.load(Ordering::Acquire) == WRITER {
            if let Err(e) = passive(writer) {
                tracing::warn!("checkpoint of the WAL's tail failed: {e}");
            }
            self.turn.store(CHECKPOINTER, Ordering::Release);
        }
    }
}

enum Wake {
    Early,
    Stop,
}

/// A running checkpointer; stops when dropped.
pub(super) struct Checkpointer {
    wake: Sender<Wake>,
    thread: Option<JoinHandle<()>>,
    wrap: Arc<Wrap>,
    early_frames: c_int,
}

impl Checkpointer {
    /// Starts checkpointing `conn`'s database (whose file `db` is) every `EVERY`, or once the
    /// WAL holds `early_frames`.
    pub fn start(conn: Connection, db: File, early_frames: c_int) -> std::io::Result<Self> {
        let (wake, woken) = channel::<Wake>();
        let wrap = Arc::new(Wrap::default());
        let shared = wrap.clone();
        let thread = std::thread::Builder::new()
            .name("hookd-checkpoint".into())
            .spawn(move || {
                loop {
                    match woken.recv_timeout(EVERY) {
                        Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                        Ok(Wake::Early) | Err(RecvTimeoutError::Timeout) => {}
                    }
                    shared.woken.store(false, Ordering::Release);
                    if shared.turn.load(Ordering::Acquire) == CHECKPOINTER {
                        cycle(&conn, &db, &shared);
                    }
                }
            })?;
        Ok(Checkpointer {
            wake,
            thread: Some(thread),
            wrap,
            early_frames,
        })
    }

    /// Watches the writer's commits (to wake early on a growing WAL) and returns the state the
    /// writer consults between batches. Call after `wal_autocheckpoint`, which replaces the hook.
    pub fn watch(&self, writer: &mut Connection) -> rusqlite::Result<Arc<Wrap>> {
        let wake = self.wake.clone();
        let wrap = self.wrap.clone();
        let early = self.early_frames;
        writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames: c_int| {
            if frames >= early && !wrap.woken.swap(true, Ordering::AcqRel) {
                // Only fails once the checkpointer has stopped.
                let _ = wake.send(Wake::Early);
            }
            Ok(())
        }))?;
        Ok(self.wrap.clone())
    }
}

/// PASSIVE never waits for the writer or readers; what it cannot copy now it copies next time.
/// Returns (frames in the WAL, frames copied back).
fn passive(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// Copies in passes until a pass finds few new frames (so few arrive while the writer copies
/// the rest), then hands the rest to the writer.
fn cycle(conn: &Connection, db: &File, wrap: &Wrap) {
    let mut copied_before = 0;
    for _ in 0..MAX_PASSES {
        match passive(conn) {
            // Empty, or a reader holds frames back: nothing to hand over this time.
            Ok((log, copied)) if log <= 0 || copied < log => return,
            Ok((log, copied)) => {
                if log - copied_before <= TAIL_FRAMES {
                    wrap.turn.store(WRITER, Ordering::Release);
                    return;
                }
                copied_before = copied;
                write_back(db);
            }
            Err(e) => {
                tracing::warn!("checkpoint failed: {e}");
                return;
            }
        }
    }
}

/// Writes the database file's dirty pages back a window at a time and waits for each, so the
/// writer's commit fsyncs queue behind a few MiB at most, never the whole cycle's copy.
#[cfg(target_os = "linux")]
fn write_back(db: &File) {
    use std::os::fd::AsRawFd;
    const WINDOW: i64 = 2 * 1024 * 1024;
    let len = db
        .metadata()
        .map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX));
    let fd = db.as_raw_fd();
    let mut offset = 0;
    while offset < len {
        // SAFETY: `fd` stays open for the call (borrowed from `db`); sync_file_range only
        // starts and awaits writeback of the given range and touches no memory of ours.
        unsafe {
            libc::sync_file_range(fd, offset, WINDOW, libc::SYNC_FILE_RANGE_WRITE);
            libc::sync_file_range(fd, offset, WINDOW, libc::SYNC_FILE_RANGE_WAIT_AFTER);
        }
        offset += WINDOW;
    }
}

/// Elsewhere the final sync flushes everything at once.
#[cfg(not(target_os = "linux"))]
fn write_back(_db: &File) {}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_a_steady_load_the_wal_is_started_over_instead_of_grown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let open = || {
            let c = Connection::open(&path).expect("open");
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                .expect("wal");
            c.pragma_update(None, "synchronous", "FULL").expect("sync");
            c
        };
        let mut writer = open();
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no auto checkpoints");
        writer
            .execute_batch("CREATE TABLE t (b BLOB)")
            .expect("table");
        let db = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("db file");
        let checkpointer = Checkpointer::start(open(), db, 64).expect("start");
        let wrap = checkpointer.watch(&mut writer).expect("watch");
        // One commit of ~one 4 KiB frame at a time: 1,500 frames would make a 6 MiB WAL.
        for _ in 0..1500 {
            wrap.before_batch(&writer);
            writer
                .execute("INSERT INTO t VALUES (randomblob(3000))", [])
                .expect("insert");
        }
        let wal = std::fs::metadata(dir.path().join("t.db-wal"))
            .expect("wal file")
            .len();
        assert!(wal < 2 * 1024 * 1024, "the WAL grew to {wal} bytes");
        drop(checkpointer);
        let n: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1500);
    }
}
