//! Mid-sized bodies (over `SEGMENT_MIN`, up to the inline limit) are appended to segment files,
//! `segments/<id>`, instead of going into their database row. In a row they would be written
//! twice, to the WAL and then by the checkpoint into the database file; here once (target 3 of
//! docs/BENCHMARKS.md: 1.37x the requests/s for three 10 KiB files per request).
//!
//! The thread that received a body appends it (`Store::capture`), so that copying it into the
//! page cache runs on the HTTP lanes in parallel instead of on the writer's serial path. An
//! append only reserves its range under a lock; the write itself runs outside it. The writer
//! then syncs every segment its batch's rows point into, and only then commits the rows, so a
//! committed row never points at bytes that are not on disk. Bytes no row points at (a crash
//! before the commit, a request dropped after its append, a repeat the writer turned away, a
//! failed write) are never read, and later appends go after them. Segments are only ever
//! appended to.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::files::{drop_cached, sync_dir};

/// Bodies larger than this (and no larger than the inline limit) go to a segment. Below it, a
/// body fits in a page or two of its row and the second write costs little.
pub const SEGMENT_MIN: usize = 8 * 1024;
/// A segment that reached this size is left for a new one (so that a future retention can
/// delete old bodies a file at a time).
const SEGMENT_MAX: u64 = 1 << 30;

/// Synced bytes this far behind the end of the segment stay in the page cache (a listener's run
/// reads its message's body right after the receive); older ones are dropped from it.
const CACHED_TAIL: u64 = 32 << 20;
/// Dropped in steps of this much, so the advice is one call per few hundred bodies.
const DROP_STEP: u64 = 8 << 20;

/// The segment files of one data dir: appended to by the receiving threads, synced by the writer.
#[derive(Debug)]
pub struct Segments {
    dir: PathBuf,
    /// A segment that reached this size is left for the next (a field so tests can lower it).
    max: u64,
    tail: Mutex<Tail>,
}

/// Where the next append goes.
#[derive(Debug)]
struct Tail {
    current: Option<Arc<Segment>>,
    /// Bytes reserved in `current` so far.
    len: u64,
    /// The highest segment id in use; a new segment takes the next.
    last_id: u32,
}

/// One open segment file.
#[derive(Debug)]
pub struct Segment {
    id: u32,
    file: File,
    /// Created since the writer last synced the directory: its entry must reach the disk too.
    new: AtomicBool,
    /// A sync of it failed: what reached the disk is unknown (and a later sync may not say so),
    /// so nothing more is appended to it; bodies already written are still synced for their rows.
    broken: AtomicBool,
    /// Bytes before this offset have been dropped from the page cache (only the writer moves it).
    dropped: AtomicU64,
    /// The end of the furthest append synced so far.
    synced: AtomicU64,
}

/// A body's bytes in a segment: durable once the writer has synced it (see [`Segments::sync`]).
#[derive(Debug, Clone)]
pub struct Appended {
    segment: Arc<Segment>,
    offset: u64,
    len: u64,
}

impl Appended {
    /// The segment's id.
    pub fn id(&self) -> u32 {
        self.segment.id
    }

    /// Where the body starts in it.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// The path of segment `id` in `dir`.
pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}"))
}

impl Segments {
    /// The segments in `dir`; appends continue at the end of the newest.
    pub fn open(dir: &Path) -> io::Result<Segments> {
        Self::open_with_max(dir, SEGMENT_MAX)
    }

    fn open_with_max(dir: &Path, max: u64) -> io::Result<Segments> {
        let mut newest = None;
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.parse::<u32>().ok()) {
                newest = newest.max(Some(id));
            }
        }
        let (current, len) = match newest {
            Some(id) => {
                let file = OpenOptions::new().write(true).open(path(dir, id))?;
                let len = file.metadata()?.len();
                (Some(Arc::new(Segment::new(id, file, false))), len)
            }
            None => (None, 0),
        };
        Ok(Segments {
            dir: dir.to_path_buf(),
            max,
            tail: Mutex::new(Tail {
                current,
                len,
                last_id: newest.unwrap_or(0),
            }),
        })
    }

    /// Appends `bytes` to the current segment. Not durable until the writer syncs it.
    pub fn append(&self, bytes: &[u8]) -> io::Result<Appended> {
        let (segment, offset) = self.reserve(bytes.len() as u64)?;
        // A failed write (a full disk, say) leaves a range no row will point at; the segment
        // stays in use, or a full disk would start a new file for every request it refuses.
        segment.file.write_all_at(bytes, offset)?;
        Ok(Appended {
            segment,
            offset,
            len: bytes.len() as u64,
        })
    }

    /// Takes `len` bytes at the end of the current segment, starting a new one where needed.
    fn reserve(&self, len: u64) -> io::Result<(Arc<Segment>, u64)> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let usable = tail
            .current
            .as_ref()
            .filter(|s| !s.broken.load(Ordering::Relaxed) && tail.len < self.max)
            .cloned();
        let segment = match usable {
            Some(s) => s,
            None => {
                let id = tail.last_id + 1;
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path(&self.dir, id))?;
                let s = Arc::new(Segment::new(id, file, true));
                tail.current = Some(s.clone());
                tail.len = 0;
                tail.last_id = id;
                s
            }
        };
        let offset = tail.len;
        tail.len += len;
        Ok((segment, offset))
    }

    /// Makes the appends a batch's rows point at durable; call before committing the rows. Each
    /// segment among them is synced once (and the directory, if one was created since).
    pub fn sync(&self, appended: &[Appended]) -> io::Result<()> {
        let mut synced: Vec<(&Arc<Segment>, u64)> = Vec::new();
        for a in appended {
            let end = a.offset + a.len;
            match synced.iter_mut().find(|(s, _)| s.id == a.segment.id) {
                Some((_, e)) => *e = (*e).max(end),
                None => synced.push((&a.segment, end)),
            }
        }
        for (segment, _) in &synced {
            if let Err(e) = segment.sync(&self.dir) {
                // After a failed fsync the file's state is unknown; never append to it again.
                segment.broken.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        for (segment, end) in synced {
            segment.synced.fetch_max(end, Ordering::Relaxed);
            segment.drop_cached(end);
        }
        Ok(())
    }

    /// The current segment's id, bytes reserved in it, and how far it is synced.
    #[cfg(test)]
    pub fn tail(&self) -> Option<(u32, u64, u64)> {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let s = tail.current.as_ref()?;
        Some((s.id, tail.len, s.synced.load(Ordering::Relaxed)))
    }
}

impl Segment {
    fn new(id: u32, file: File, new: bool) -> Self {
        Segment {
            id,
            file,
            new: AtomicBool::new(new),
            broken: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        }
    }

    /// fsyncs the file's data, and its directory entry if it is new.
    fn sync(&self, dir: &Path) -> io::Result<()> {
        self.file.sync_data()?;
        if self.new.load(Ordering::Acquire) {
            sync_dir(dir)?;
            self.new.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Drops bodies synced up to `synced` that lie behind the cached tail from the page cache
    /// (see [`drop_cached`]). Pages still dirty there (an append whose row comes in a later
    /// batch) are not dropped by the kernel, only started on their way to the disk.
    fn drop_cached(&self, synced: u64) {
        let upto = synced.saturating_sub(CACHED_TAIL);
        let dropped = self.dropped.load(Ordering::Relaxed);
        if upto >= dropped + DROP_STEP {
            drop_cached(&self.file, dropped..upto);
            self.dropped.store(upto, Ordering::Relaxed);
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

    fn at(a: &Appended) -> (u32, u64) {
        (a.id(), a.offset())
    }

    #[test]
    fn appends_land_where_they_say_and_continue_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segs = Segments::open(dir.path()).expect("open");
        let hello = segs.append(b"hello").expect("append");
        let world = segs.append(b"world!").expect("append");
        assert_eq!((at(&hello), at(&world)), ((1, 0), (1, 5)));
        segs.sync(&[hello, world]).expect("sync");
        drop(segs);
        // A crash after an append that was never committed leaves bytes no row points at;
        // later appends go after them, never over bytes a committed row may point at.
        let segs = Segments::open(dir.path()).expect("reopen");
        assert_eq!(at(&segs.append(b"torn").expect("append")), (1, 11));
        drop(segs);
        let segs = Segments::open(dir.path()).expect("reopen");
        let next = segs.append(b"next").expect("append");
        assert_eq!(at(&next), (1, 15));
        segs.sync(&[next]).expect("sync");
        assert_eq!(read(dir.path(), 1, 0, 5), b"hello");
        assert_eq!(read(dir.path(), 1, 5, 6), b"world!");
        assert_eq!(read(dir.path(), 1, 15, 4), b"next");
    }

    #[test]
    fn appends_from_many_threads_at_once_never_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Small segments, so that threads also race to start new ones.
        let segs = Segments::open_with_max(dir.path(), 64 * 1024).expect("open");
        let body = |t: usize, i: usize| {
            let len = 1 + (t * 7919 + i * 104_729) % 6000;
            (0..len)
                .map(|j| (t * 31 + i * 7 + j) as u8)
                .collect::<Vec<u8>>()
        };
        let appended: Vec<(usize, usize, Appended)> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let segs = &segs;
                    scope.spawn(move || {
                        (0..200)
                            .map(|i| (t, i, segs.append(&body(t, i)).expect("append")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let all: Vec<Appended> = appended.iter().map(|(_, _, a)| a.clone()).collect();
        segs.sync(&all).expect("sync");
        for (t, i, a) in &appended {
            let want = body(*t, *i);
            assert_eq!(read(dir.path(), a.id(), a.offset(), want.len()), want);
        }
        let ids: std::collections::BTreeSet<u32> = all.iter().map(Appended::id).collect();
        assert!(ids.len() > 10, "only {} segments used", ids.len());
    }

    #[test]
    fn a_segment_whose_sync_failed_is_never_appended_to_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segs = Segments::open(dir.path()).expect("open");
        let a = segs.append(b"a").expect("append");
        a.segment.broken.store(true, Ordering::Relaxed);
        let b = segs.append(b"b").expect("append");
        assert_eq!((at(&a), at(&b)), ((1, 0), (2, 0)));
        // What was written before the failure is still synced for its rows.
        segs.sync(&[a, b]).expect("sync");
        assert_eq!(read(dir.path(), 1, 0, 1), b"a");
        assert_eq!(read(dir.path(), 2, 0, 1), b"b");
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
        let segs = Segments::open(dir.path()).expect("open");
        let chunk = |i: u8| vec![i; 1 << 20];
        let n = ((CACHED_TAIL + DROP_STEP) >> 20) as u8 + 1;
        let all: Vec<Appended> = (0..n)
            .map(|i| segs.append(&chunk(i)).expect("append"))
            .collect();
        // Not synced yet: nothing may be dropped (dirty pages are not yet on disk).
        let file = File::open(path(dir.path(), 1)).expect("segment");
        if let Some((cached, all)) = cached_pages(&file, 0..DROP_STEP) {
            assert_eq!(cached, all, "dropped before the sync");
        }
        segs.sync(&all).expect("sync");
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
        let segs = Segments::open_with_max(dir.path(), 4).expect("open");
        let a = segs.append(b"abcd").expect("append");
        let b = segs.append(b"e").expect("append");
        assert_eq!((at(&a), at(&b)), ((1, 0), (2, 0)));
        segs.sync(&[a, b]).expect("sync");
        assert_eq!(read(dir.path(), 1, 0, 4), b"abcd");
        assert_eq!(read(dir.path(), 2, 0, 1), b"e");
        let segs = Segments::open_with_max(dir.path(), 4).expect("reopen");
        assert_eq!(at(&segs.append(b"f").expect("append")), (2, 1));
    }
}
