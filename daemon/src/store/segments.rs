//! Mid-sized bodies (over `SEGMENT_MIN`, up to the inline limit) are appended to segment files,
//! `segments/<id>`, instead of going into their database row. In a row they would be written
//! twice, to the WAL and then by the checkpoint into the database file; here once (target 3 of
//! docs/BENCHMARKS.md: 1.37x the requests/s for three 10 KiB files per request).
//!
//! The writer appends a batch's bodies, syncs the segment, and only then commits the rows that
//! point into it, so a committed row never points at bytes that are not on disk. A crash between
//! the two leaves bytes no row points at, at the end of the segment; they are never read, and
//! later appends go after them. Segments are only ever appended to.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::files::{drop_cached, sync_dir};

/// Bodies larger than this (and no larger than the inline limit) go to a segment. Below it, a
/// body fits in a page or two of its row and the second write costs little.
pub const SEGMENT_MIN: usize = 8 * 1024;
/// A segment that reached this size is left for a new one (so that a future retention can
/// delete old bodies a file at a time).
const SEGMENT_MAX: u64 = 1 << 30;

/// The segment files of one data dir, owned by the writer thread.
pub struct Segments {
    dir: PathBuf,
    current: Option<Current>,
    /// The highest segment id in use; a new segment takes the next.
    last_id: u32,
    /// Appended to since the last sync.
    dirty: bool,
    /// A segment file was created since the last sync: its directory entry needs syncing too.
    created: bool,
}

struct Current {
    id: u32,
    file: File,
    len: u64,
    /// Bytes before this offset have been dropped from the page cache.
    dropped: u64,
}

/// Synced bytes this far behind the end of the segment stay in the page cache (a listener's run
/// reads its message's body right after the receive); older ones are dropped from it.
const CACHED_TAIL: u64 = 32 << 20;
/// Dropped in steps of this much, so the advice is one call per few hundred bodies.
const DROP_STEP: u64 = 8 << 20;

impl Current {
    /// An open segment of `len` bytes, none of them dropped from the page cache yet.
    fn new(id: u32, file: File, len: u64) -> Self {
        Current {
            id,
            file,
            len,
            dropped: 0,
        }
    }

    /// Drops synced bodies behind the cached tail from the page cache (see [`drop_cached`]).
    fn drop_cached(&mut self) {
        let upto = self.len.saturating_sub(CACHED_TAIL);
        if upto >= self.dropped + DROP_STEP {
            drop_cached(&self.file, self.dropped..upto);
            self.dropped = upto;
        }
    }
}

/// The path of segment `id` in `dir`.
pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}"))
}

impl Segments {
    /// The segments in `dir`; appends continue at the end of the newest.
    pub fn open(dir: &Path) -> io::Result<Segments> {
        let mut newest = None;
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.parse::<u32>().ok()) {
                newest = newest.max(Some(id));
            }
        }
        let current = match newest {
            Some(id) => {
                let file = OpenOptions::new().write(true).open(path(dir, id))?;
                let len = file.metadata()?.len();
                Some(Current::new(id, file, len))
            }
            None => None,
        };
        Ok(Segments {
            dir: dir.to_path_buf(),
            current,
            last_id: newest.unwrap_or(0),
            dirty: false,
            created: false,
        })
    }

    /// Appends `bytes`; returns (segment id, offset). Not durable until [`Segments::sync`].
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<(u32, u64)> {
        let full = self.current.as_ref().is_none_or(|c| c.len >= SEGMENT_MAX);
        if full {
            let id = self.last_id + 1;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path(&self.dir, id))?;
            // The previous segment's last appends are synced with this batch's.
            if let Some(old) = self.current.take().filter(|_| self.dirty) {
                old.file.sync_data()?;
            }
            self.current = Some(Current::new(id, file, 0));
            self.last_id = id;
            self.created = true;
        }
        let Some(cur) = self.current.as_mut() else {
            return Err(io::Error::other("no segment open"));
        };
        let at = cur.len;
        // A failed write (a full disk, say) leaves bytes no row points at, which the next append
        // writes over; moving to a new segment instead started a file per refused request.
        cur.file.write_all_at(bytes, at)?;
        cur.len += bytes.len() as u64;
        self.dirty = true;
        Ok((cur.id, at))
    }

    /// Makes every append so far durable; call before committing rows that point at them.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let result = match &self.current {
            Some(cur) => cur.file.sync_data(),
            None => Ok(()),
        };
        let result = result.and_then(|()| {
            if self.created {
                sync_dir(&self.dir)
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.dirty = false;
                self.created = false;
                if let Some(cur) = self.current.as_mut() {
                    cur.drop_cached();
                }
                Ok(())
            }
            Err(e) => {
                // After a failed fsync the file's state is unknown; never append to it again.
                self.current = None;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, id: u32, at: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        File::open(path(dir, id))
            .expect("segment")
            .read_exact_at(&mut buf, at)
            .expect("read");
        buf
    }

    #[test]
    fn appends_land_where_they_say_and_continue_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segs = Segments::open(dir.path()).expect("open");
        assert_eq!(segs.append(b"hello").expect("append"), (1, 0));
        assert_eq!(segs.append(b"world!").expect("append"), (1, 5));
        segs.sync().expect("sync");
        drop(segs);
        // A crash after an append that was never committed leaves bytes no row points at;
        // later appends go after them, never over bytes a committed row may point at.
        let mut segs = Segments::open(dir.path()).expect("reopen");
        assert_eq!(segs.append(b"torn").expect("append"), (1, 11));
        drop(segs);
        let mut segs = Segments::open(dir.path()).expect("reopen");
        assert_eq!(segs.append(b"next").expect("append"), (1, 15));
        segs.sync().expect("sync");
        assert_eq!(read(dir.path(), 1, 0, 5), b"hello");
        assert_eq!(read(dir.path(), 1, 5, 6), b"world!");
        assert_eq!(read(dir.path(), 1, 15, 4), b"next");
    }

    /// How many of the pages of `file` in `range` are in the page cache, and how many pages
    /// the range has (None where the filesystem keeps everything in memory anyway, or off
    /// Linux, where nothing is dropped).
    #[cfg(not(target_os = "linux"))]
    fn cached_pages(_file: &File, _range: std::ops::Range<u64>) -> Option<(usize, usize)> {
        None
    }

    #[cfg(target_os = "linux")]
    fn cached_pages(file: &File, range: std::ops::Range<u64>) -> Option<(usize, usize)> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: plain syscalls on a valid fd; `st`, the mapping and `pages` outlive their use.
        unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            if libc::fstatfs(fd, &mut st) != 0 || st.f_type == libc::TMPFS_MAGIC {
                return None;
            }
            let len = (range.end - range.start) as usize;
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                range.start as libc::off_t,
            );
            assert_ne!(map, libc::MAP_FAILED, "mmap");
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
            let mut pages = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, pages.as_mut_ptr()), 0, "mincore");
            libc::munmap(map, len);
            Some((pages.iter().filter(|p| *p & 1 == 1).count(), pages.len()))
        }
    }

    #[test]
    fn synced_bodies_behind_the_cached_tail_leave_the_page_cache_and_read_back_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segs = Segments::open(dir.path()).expect("open");
        let chunk = |i: u8| vec![i; 1 << 20];
        let n = ((CACHED_TAIL + DROP_STEP) >> 20) as u8 + 1;
        for i in 0..n {
            segs.append(&chunk(i)).expect("append");
        }
        // Not synced yet: nothing may be dropped (dirty pages are not yet on disk).
        let file = File::open(path(dir.path(), 1)).expect("segment");
        if let Some((cached, all)) = cached_pages(&file, 0..DROP_STEP) {
            assert_eq!(cached, all, "dropped before the sync");
        }
        segs.sync().expect("sync");
        let len = u64::from(n) << 20;
        if let Some((cached, _)) = cached_pages(&file, 0..DROP_STEP) {
            assert_eq!(cached, 0, "synced pages behind the tail are still cached");
        }
        if let Some((cached, all)) = cached_pages(&file, len - DROP_STEP..len) {
            assert_eq!(cached, all, "the tail was dropped too");
        }
        for i in [0, 1, n - 1] {
            assert_eq!(read(dir.path(), 1, u64::from(i) << 20, 1 << 20), chunk(i));
        }
    }

    #[test]
    fn a_full_segment_is_left_for_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segs = Segments::open(dir.path()).expect("open");
        segs.append(b"a").expect("append");
        if let Some(cur) = segs.current.as_mut() {
            cur.len = SEGMENT_MAX;
        }
        assert_eq!(segs.append(b"b").expect("append"), (2, 0));
        segs.sync().expect("sync");
        assert_eq!(read(dir.path(), 1, 0, 1), b"a");
        assert_eq!(read(dir.path(), 2, 0, 1), b"b");
        let mut segs = Segments::open(dir.path()).expect("reopen");
        assert_eq!(segs.append(b"c").expect("append"), (2, 1));
    }
}
