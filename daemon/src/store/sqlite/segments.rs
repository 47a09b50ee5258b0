//! Mid-sized bodies (over `SEGMENT_MIN`, up to the inline limit) are appended to segment files,
//! `segments/<id>`, instead of going into their database row. In a row they would be written
//! twice, to the WAL and then by the checkpoint into the database file; here once (target 3 of
//! docs/BENCHMARKS.md: 1.37x the requests/s for three 10 KiB files per request).
//!
//! The writer appends a batch's bodies, syncs the segment, and only then commits the rows that
//! point into it, so a committed row never points at bytes that are not on disk. A crash between
//! the two leaves bytes no row points at, at the end of the segment; they are never read, and
//! later appends go after them. Segments are only ever appended to.
//!
//! Appends are staged in memory and written with direct I/O (`O_DIRECT`), a megabyte or a batch
//! at a time. Through the page cache, a 31 KiB body cost the writer more than everything else it
//! does for the request: the copy into new cache pages (each a fault on the host on a VM), the
//! filesystem's per-page bookkeeping, writeback at the sync, and dropping the pages after; the
//! writer was the bottleneck of small multipart receives, and writing no segment at all doubled
//! their rate (docs/BENCHMARKS.md, target 3). Direct I/O wants whole, aligned blocks: a sync pads
//! the batch's last block with zeros and the next batch starts on a new block (under load a batch
//! holds dozens of bodies, so the padding is a fraction of a per cent; one 9 KiB body at a time
//! takes 12 KiB). A block is never written again once a row may point into it: readers read
//! through the page cache, and Linux keeps that cache coherent with direct writes only where the
//! two do not overlap.
//! Where the filesystem refuses `O_DIRECT` (tmpfs before Linux 6.6, some FUSE filesystems), the
//! same staging writes through the page cache instead.

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
/// Direct I/O's alignment of buffers, offsets and lengths: the logical block of every common
/// device divides it.
const ALIGN: usize = 4096;
/// Staged appends are written once they reach this much, so a batch of hundreds of bodies never
/// holds more than this in memory. Larger than any one body (at most the inline limit).
const STAGE: usize = 1 << 20;

/// The segment files of one data dir, owned by the writer thread.
pub struct Segments {
    dir: PathBuf,
    current: Option<Current>,
    /// The highest segment id in use; a new segment takes the next.
    last_id: u32,
    /// A segment file was created since the last sync: its directory entry needs syncing too.
    created: bool,
    /// Appends not yet written; allocated at the first append.
    stage: Option<Stage>,
    /// Segments are opened with `O_DIRECT` (always, but in tests of the fallback).
    direct: bool,
}

struct Current {
    id: u32,
    path: PathBuf,
    file: File,
    /// Opened with `O_DIRECT`.
    direct: bool,
    /// Where the staged bytes go: everything before it is written. Aligned when `direct`.
    written: u64,
    /// `written` at the last sync: a failed write goes back to it, so the next append writes
    /// over what it left.
    synced: u64,
    /// Bytes before this offset have been dropped from the page cache (without `O_DIRECT`).
    dropped: u64,
}

/// Memory aligned for direct I/O: a fixed slice of an over-allocated, never-resized Vec.
struct Stage {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl Stage {
    fn new() -> Stage {
        let mem = vec![0; STAGE + 2 * ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN);
        Stage { mem, start, len: 0 }
    }

    fn room(&self) -> usize {
        STAGE + ALIGN - self.len
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = self.start + self.len;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    /// The staged bytes padded with zeros to whole blocks.
    fn padded(&mut self) -> &[u8] {
        let end = self.len.next_multiple_of(ALIGN);
        self.mem[self.start + self.len..self.start + end].fill(0);
        &self.mem[self.start..self.start + end]
    }

    /// Forgets the first `n` staged bytes, keeping the rest.
    fn consume(&mut self, n: usize) {
        self.mem
            .copy_within(self.start + n..self.start + self.len, self.start);
        self.len -= n;
    }
}

/// Synced bytes this far behind the end of the segment stay in the page cache (a listener's run
/// reads its message's body right after the receive); older ones are dropped from it. Only
/// without `O_DIRECT`, whose writes leave nothing in the cache.
const CACHED_TAIL: u64 = 32 << 20;
/// Dropped in steps of this much, so the advice is one call per few hundred bodies.
const DROP_STEP: u64 = 8 << 20;

impl Current {
    /// Opens segment `id` for appends after its end (created when `create`), with `O_DIRECT`
    /// when `direct` and the filesystem has it.
    fn open(dir: &Path, id: u32, create: bool, direct: bool) -> io::Result<Current> {
        let p = path(dir, id);
        let open = |direct: bool| {
            let mut o = OpenOptions::new();
            o.write(true).create_new(create);
            if direct {
                direct_io(&mut o);
            }
            o.open(&p)
        };
        let (file, direct) = match open(direct) {
            Ok(f) => (f, direct && cfg!(target_os = "linux")),
            // EINVAL: the filesystem has no direct I/O. A file created by the failed attempt
            // (some filesystems refuse only at open's end) is reused, not created again.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let mut o = OpenOptions::new();
                o.write(true).create(create);
                (o.open(&p)?, false)
            }
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        // Direct writes start on a block; a file that ends inside one (written without
        // `O_DIRECT`, or by a build before it) continues after it.
        let written = if direct {
            len.next_multiple_of(ALIGN as u64)
        } else {
            len
        };
        Ok(Current {
            id,
            path: p,
            file,
            direct,
            written,
            synced: written,
            dropped: 0,
        })
    }

    /// Writes the staged bytes: all of them when `all` (the last block padded, so the next
    /// write starts on a new block), else the whole blocks among them; what is written leaves
    /// the stage.
    fn write(&mut self, stage: &mut Stage, all: bool) -> io::Result<()> {
        if !self.direct {
            self.file.write_all_at(stage.bytes(), self.written)?;
            self.written += stage.len as u64;
            stage.len = 0;
            return Ok(());
        }
        let (result, done) = if all {
            let padded = stage.padded();
            (self.file.write_all_at(padded, self.written), padded.len())
        } else {
            let whole = stage.len - stage.len % ALIGN;
            let r = self
                .file
                .write_all_at(&stage.bytes()[..whole], self.written);
            (r, whole)
        };
        match result {
            // Opened with O_DIRECT but refused it at the write (some FUSE filesystems): this
            // segment goes on through the page cache.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(
                    "{}: direct I/O refused ({e}); writing through the page cache",
                    self.path.display()
                );
                self.file = OpenOptions::new().write(true).open(&self.path)?;
                self.direct = false;
                return self.write(stage, all);
            }
            r => r?,
        }
        if all {
            stage.len = 0;
        } else {
            stage.consume(done);
        }
        self.written += done as u64;
        Ok(())
    }

    /// Whether anything was appended since the last sync: staged, or written but not synced.
    fn unsynced(&self, stage: &Stage) -> bool {
        stage.len > 0 || self.written != self.synced
    }

    /// Back to the state of the last sync, after a failed write.
    fn rewind(&mut self, stage: &mut Stage) {
        self.written = self.synced;
        stage.len = 0;
    }

    /// Drops synced bodies behind the cached tail from the page cache (see [`drop_cached`]).
    fn drop_cached(&mut self) {
        let upto = self.written.saturating_sub(CACHED_TAIL);
        if !self.direct && upto >= self.dropped + DROP_STEP {
            drop_cached(&self.file, self.dropped..upto);
            self.dropped = upto;
        }
    }
}

#[cfg(target_os = "linux")]
fn direct_io(o: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    o.custom_flags(libc::O_DIRECT);
}

#[cfg(not(target_os = "linux"))]
fn direct_io(_: &mut OpenOptions) {}

/// The path of segment `id` in `dir`.
pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}"))
}

/// Frees the disk blocks of pruned bodies in segment `id`: `ranges` (offset, length), in any
/// order. Ranges less than a body apart are merged first (between two bodies of a segment lie
/// only padding and bytes no row points at: a live body is larger than `SEGMENT_MIN`), then each
/// merged range's whole blocks are punched out; the file keeps its size, so offsets stay valid.
/// Where the filesystem cannot punch holes nothing is freed (the bodies are unreachable anyway).
/// Returns the bytes punched.
pub fn punch(dir: &Path, id: u32, ranges: &mut [(u64, u64)]) -> io::Result<u64> {
    let file = match OpenOptions::new().write(true).open(path(dir, id)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for &(at, len) in ranges.iter() {
        match merged.last_mut() {
            Some((_, end)) if at < *end + SEGMENT_MIN as u64 => *end = (*end).max(at + len),
            _ => merged.push((at, at + len)),
        }
    }
    let mut punched = 0;
    for (start, end) in merged {
        let (start, end) = (
            start.next_multiple_of(ALIGN as u64),
            end - end % ALIGN as u64,
        );
        if end > start {
            punch_hole(&file, start, end - start)?;
            punched += end - start;
        }
    }
    Ok(punched)
}

#[cfg(target_os = "linux")]
fn punch_hole(file: &File, at: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (libc::off64_t::try_from(at), libc::off64_t::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: the fd is open for the call (borrowed from `file`); fallocate touches no memory.
    let r = unsafe {
        libc::fallocate64(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            at,
            len,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // Filesystems without hole punching: the blocks stay allocated; nothing else is wrong.
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return Ok(());
    }
    Err(e)
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_: &File, _: u64, _: u64) -> io::Result<()> {
    Ok(())
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
            Some(id) => Some(Current::open(dir, id, false, true)?),
            None => None,
        };
        Ok(Segments {
            dir: dir.to_path_buf(),
            current,
            last_id: newest.unwrap_or(0),
            created: false,
            stage: None,
            direct: true,
        })
    }

    /// Appends `bytes`; returns (segment id, offset). Not durable until [`Segments::sync`].
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<(u32, u64)> {
        let stage = self.stage.get_or_insert_with(Stage::new);
        let end = |c: &Current, s: &Stage| c.written + s.len as u64;
        if self
            .current
            .as_ref()
            .is_none_or(|c| end(c, stage) >= SEGMENT_MAX)
        {
            // The previous segment's last appends are written and synced with this batch's.
            if let Some(old) = self.current.as_mut().filter(|c| c.unsynced(stage))
                && let Err(e) = old.write(stage, true).and_then(|()| old.file.sync_data())
            {
                old.rewind(stage);
                return Err(e);
            }
            let id = self.last_id + 1;
            self.current = Some(Current::open(&self.dir, id, true, self.direct)?);
            stage.len = 0;
            self.last_id = id;
            self.created = true;
        }
        let Some(cur) = self.current.as_mut() else {
            return Err(io::Error::other("no segment open"));
        };
        if stage.room() < bytes.len()
            && let Err(e) = cur.write(stage, false)
        {
            cur.rewind(stage);
            return Err(e);
        }
        if stage.room() < bytes.len() {
            return Err(io::Error::other("a body larger than a segment's stage"));
        }
        let at = end(cur, stage);
        stage.push(bytes);
        Ok((cur.id, at))
    }

    /// Makes every append so far durable; call before committing rows that point at them.
    pub fn sync(&mut self) -> io::Result<()> {
        let (Some(cur), Some(stage)) = (self.current.as_mut(), self.stage.as_mut()) else {
            return Ok(());
        };
        if !cur.unsynced(stage) {
            return Ok(());
        }
        // A failed write (a full disk, say) leaves bytes no row points at, which the next append
        // writes over; moving to a new segment instead started a file per refused request.
        if let Err(e) = cur.write(stage, true) {
            cur.rewind(stage);
            return Err(e);
        }
        let result = cur.file.sync_data().and_then(|()| {
            if self.created {
                sync_dir(&self.dir)
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.created = false;
                cur.synced = cur.written;
                cur.drop_cached();
                Ok(())
            }
            Err(e) => {
                // After a failed fsync the file's state is unknown; never append to it again.
                self.current = None;
                stage.len = 0;
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
        // A crash after an append that was never committed leaves bytes no row points at (or
        // none: the append may not have left memory); later appends go after everything synced,
        // never over bytes a committed row may point at.
        let mut segs = Segments::open(dir.path()).expect("reopen");
        let (id, torn) = segs.append(b"torn").expect("append");
        assert!(id == 1 && torn >= 11, "{torn}");
        drop(segs);
        let mut segs = Segments::open(dir.path()).expect("reopen");
        let (id, next) = segs.append(b"next").expect("append");
        assert!(id == 1 && next >= 11, "{next}");
        segs.sync().expect("sync");
        assert_eq!(read(dir.path(), 1, 0, 5), b"hello");
        assert_eq!(read(dir.path(), 1, 5, 6), b"world!");
        assert_eq!(read(dir.path(), 1, next, 4), b"next");
    }

    /// Bodies of every size, synced in batches of every size (batches larger than the stage
    /// written in parts), read back exactly: a batch's bodies one after another, the next batch
    /// on the next block (direct I/O) or right after (through the page cache).
    #[test]
    fn staged_appends_read_back_exactly_across_syncs_and_partial_blocks() {
        staged_appends_read_back(true);
    }

    /// The same through the page cache, where a filesystem has no direct I/O.
    #[test]
    fn without_direct_io_staged_appends_read_back_exactly_too() {
        staged_appends_read_back(false);
    }

    fn staged_appends_read_back(direct: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segs = Segments::open(dir.path()).expect("open");
        segs.direct = direct;
        let mut stored = Vec::new();
        let mut expect_at = 0;
        let mut largest = 0;
        let sizes = [1, 4095, 4096, 4097, 9000, 65536, 12345, 3, 65535, 8191];
        for batch in 0..40usize {
            let mut batch_bytes = 0;
            for i in 0..(batch % 7) * 20 + 1 {
                let len = sizes[(batch + i) % sizes.len()];
                let body: Vec<u8> = (0..len).map(|j| (j * 31 + batch * 7 + i) as u8).collect();
                let (id, at) = segs.append(&body).expect("append");
                assert_eq!((id, at), (1, expect_at));
                expect_at += len as u64;
                batch_bytes += len;
                stored.push((at, body));
            }
            largest = largest.max(batch_bytes);
            segs.sync().expect("sync");
            // Whether the filesystem took O_DIRECT (a tmpfs before Linux 6.6 does not).
            let is_direct = segs.current.as_ref().is_some_and(|c| c.direct);
            assert!(direct || !is_direct, "asked for the page cache");
            if direct && takes_direct_io(dir.path()) {
                assert!(is_direct, "ext4, xfs and btrfs take O_DIRECT");
            }
            if is_direct {
                expect_at = expect_at.next_multiple_of(ALIGN as u64);
                assert_eq!(
                    std::fs::metadata(path(dir.path(), 1)).expect("len").len(),
                    expect_at
                );
            }
            for (at, body) in &stored {
                assert!(
                    read(dir.path(), 1, *at, body.len()) == *body,
                    "batch {batch}"
                );
            }
        }
        assert!(largest > STAGE, "no batch was written in parts");
    }

    /// Whether `dir` is on a filesystem known to take `O_DIRECT`.
    #[cfg(target_os = "linux")]
    fn takes_direct_io(dir: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a plain syscall with a valid C string and a zeroed struct it fills in.
        let kind = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            if libc::statfs(c.as_ptr(), &mut st) != 0 {
                return false;
            }
            st.f_type
        };
        [0xEF53, 0x5846_5342, 0x9123_683E].contains(&(kind as i64))
    }

    #[cfg(not(target_os = "linux"))]
    fn takes_direct_io(_: &Path) -> bool {
        false
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
        synced_bodies_leave_the_page_cache(true);
        synced_bodies_leave_the_page_cache(false);
    }

    fn synced_bodies_leave_the_page_cache(direct_wanted: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segs = Segments::open(dir.path()).expect("open");
        segs.direct = direct_wanted;
        let chunk = |i: u8| vec![i; 64 << 10];
        let n = ((CACHED_TAIL + DROP_STEP) >> 16) as usize + 1;
        for i in 0..n {
            segs.append(&chunk(i as u8)).expect("append");
        }
        let direct = segs.current.as_ref().is_some_and(|c| c.direct);
        let file = File::open(path(dir.path(), 1)).expect("segment");
        segs.sync().expect("sync");
        let len = (n as u64) << 16;
        if let Some((cached, all)) = cached_pages(&file, 0..DROP_STEP) {
            assert_eq!(
                cached, 0,
                "synced pages behind the tail are still cached ({all})"
            );
        }
        if let Some((cached, all)) = cached_pages(&file, len - DROP_STEP..len) {
            // Direct writes never pass through the cache; others keep the recent tail there.
            let want = if direct { 0 } else { all };
            assert_eq!(cached, want, "direct: {direct}");
        }
        for i in [0, 1, n - 1] {
            let at = (i as u64) << 16;
            assert_eq!(read(dir.path(), 1, at, 64 << 10), chunk(i as u8));
        }
    }

    #[test]
    fn a_full_segment_is_left_for_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segs = Segments::open(dir.path()).expect("open");
        segs.append(b"a").expect("append");
        segs.sync().expect("sync");
        if let Some(cur) = segs.current.as_mut() {
            cur.written = SEGMENT_MAX;
            cur.synced = SEGMENT_MAX;
        }
        assert_eq!(segs.append(b"b").expect("append"), (2, 0));
        segs.sync().expect("sync");
        assert_eq!(read(dir.path(), 1, 0, 1), b"a");
        assert_eq!(read(dir.path(), 2, 0, 1), b"b");
        let mut segs = Segments::open(dir.path()).expect("reopen");
        let (id, at) = segs.append(b"c").expect("append");
        assert!(id == 2 && at >= 1, "{id} {at}");
    }
}
