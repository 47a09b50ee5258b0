//! Bodies too large to keep inline live as files beside the database.
//!
//! A body is written to `incoming/<id>` and fsynced before its message is committed; after the
//! commit the writer moves it to `files/<id>`. A crash can therefore leave, in `incoming/`, only
//! files of committed messages (moved at the next start) or of requests that never got a 2xx
//! (deleted at the next start). `files/` only ever holds committed bodies.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// The data dir's layout.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
    pub incoming: PathBuf,
    pub files: PathBuf,
    /// Append-only files of mid-sized bodies (see `segments.rs`).
    pub segments: PathBuf,
}

impl Dirs {
    /// The layout under `root`, created if missing.
    pub fn create(root: &Path) -> io::Result<Dirs> {
        let dirs = Dirs {
            root: root.to_path_buf(),
            incoming: root.join("incoming"),
            files: root.join("files"),
            segments: root.join("segments"),
        };
        fs::create_dir_all(&dirs.incoming)?;
        fs::create_dir_all(&dirs.files)?;
        fs::create_dir_all(&dirs.segments)?;
        // Committed rows will point into these directories: their entries must survive a crash.
        sync_dir(&dirs.root)?;
        Ok(dirs)
    }

    /// Takes the data dir for this process, or says which file another hookd holds. Two daemons on
    /// one data dir would both dispatch and deliver everything, and one's start-up recovery would
    /// delete the other's in-flight bodies in `incoming/`. The OS drops the lock when the process
    /// ends, however it ends, so a `kill -9` never leaves a stale one.
    pub fn lock(&self) -> Result<File, StoreError> {
        let path = self.root.join("hookd.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse(path)),
            Err(fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.root.join("hookd.db")
    }

    /// Where a committed body file is, allowing for the instant between commit and move.
    pub fn committed_path(&self, id: &str) -> io::Result<PathBuf> {
        let done = self.files.join(id);
        if done.exists() {
            return Ok(done);
        }
        let pending = self.incoming.join(id);
        if pending.exists() {
            return Ok(pending);
        }
        // The move may have completed between the two checks.
        if done.exists() {
            return Ok(done);
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("body file {id} is missing from {}", self.files.display()),
        ))
    }

    /// Moves committed bodies from `incoming/` to `files/` and makes the moves durable.
    pub fn promote(&self, ids: &[String]) -> io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            fs::rename(self.incoming.join(id), self.files.join(id))?;
        }
        sync_dir(&self.files)?;
        sync_dir(&self.incoming)
    }

    /// Deletes an uncommitted body file (best effort: start-up recovery catches leftovers).
    pub fn discard(&self, id: Option<&str>) {
        if let Some(id) = id {
            let _ = fs::remove_file(self.incoming.join(id));
        }
    }

    /// Settles what a crash left in `incoming/`: committed bodies move on, the rest is deleted.
    /// Returns (moved, deleted).
    pub fn recover(&self, conn: &Connection) -> Result<(usize, usize), StoreError> {
        let (mut moved, mut deleted) = (0, 0);
        let mut committed = conn.prepare("SELECT 1 FROM messages WHERE body_file = ?1")?;
        for entry in fs::read_dir(&self.incoming)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_committed = committed
                .query_row([&name], |_| Ok(()))
                .optional()?
                .is_some();
            if is_committed {
                fs::rename(entry.path(), self.files.join(&name))?;
                moved += 1;
            } else {
                fs::remove_file(entry.path())?;
                deleted += 1;
            }
        }
        if moved > 0 {
            sync_dir(&self.files)?;
        }
        Ok((moved, deleted))
    }
}

/// Drops `range` of `file` from the page cache once it is written back. Bodies are written once
/// and seldom read: cached, they only evict the database's pages, and on machines whose free
/// memory is handed back to the hypervisor every new page cache page costs a fault on its first
/// write (docs/BENCHMARKS.md, target 3), while dropped pages are reused by the next writes.
/// Only clean pages are dropped: call it on a synced range. Advice only: failure leaves the pages
/// cached, which is harmless.
#[cfg(target_os = "linux")]
pub fn drop_cached(file: &File, range: std::ops::Range<u64>) {
    use std::os::fd::AsRawFd;
    let (Ok(start), Ok(len)) = (
        libc::off64_t::try_from(range.start),
        libc::off64_t::try_from(range.end.saturating_sub(range.start)),
    ) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: the fd is open for the call (borrowed from `file`); the call acts on the file's
    // pages and touches no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// Elsewhere the pages stay cached.
#[cfg(not(target_os = "linux"))]
pub fn drop_cached(_file: &File, _range: std::ops::Range<u64>) {}

pub use crate::store::spool::sync_dir;
