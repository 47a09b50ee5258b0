//! Backups: a consistent copy of the database and of every body it points at, as one tar archive,
//! taken while the daemon runs; and restoring one into an empty data dir.
//!
//! The database is copied with SQLite's online backup API in a single step, so the copy is one
//! snapshot however much is written meanwhile (writers go on in the WAL). The bodies are then read
//! from the copy's point of view: every body file it names and every segment it points into.
//! Bodies cannot vanish under the backup: a body file or segment range is freed only a grace
//! period after its row is deleted, and not at all while a backup runs (see `Store::backup`).
//! Segments are written as their data extents only, so the holes retention punched stay holes.
//! The manifest comes last: an archive without one was cut off and is refused by `restore`.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::files::Dirs;
pub use crate::store::model::backup::*;

/// The archive's last entry: what it holds.
pub const MANIFEST: &str = "hookd-backup.json";
/// The archive format this build writes and reads.
const FORMAT: u32 = 1;

/// Writes a backup of the store in `dirs` to `out`. Needs free space for one copy of the
/// database in the data dir while it runs.
pub fn write(dirs: &Dirs, out: impl Write) -> Result<Manifest, StoreError> {
    let snapshot = dirs
        .root
        .join(format!("backup-{}.db.tmp", uuid::Uuid::new_v4().simple()));
    let result = write_with(dirs, &snapshot, out);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = fs::remove_file(format!("{}{suffix}", snapshot.display()));
    }
    result
}

fn write_with(dirs: &Dirs, snapshot: &Path, out: impl Write) -> Result<Manifest, StoreError> {
    {
        let src = Connection::open_with_flags(dirs.db(), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        src.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut dst = Connection::open(snapshot)?;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
        // One step: the whole copy under one read transaction, so it is one snapshot. Stepping
        // in chunks would restart at every commit of the writer, and never finish under load.
        backup.step(-1)?;
    }
    let db = Connection::open(snapshot)?;
    let schema: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let messages: i64 = db.query_row(
        "SELECT coalesce(sum(stored_count), 0) FROM (SELECT stored_count FROM webhooks \
         UNION ALL SELECT stored_count FROM retired_webhooks)",
        [],
        |r| r.get(0),
    )?;
    let files: Vec<String> = db
        .prepare("SELECT body_file FROM messages WHERE body_file IS NOT NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let segments: Vec<u32> = {
        let mut ids: Vec<u32> = fs::read_dir(&dirs.segments)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    };
    drop(db);

    let mut tar = tar::Builder::new(out);
    let mut bytes = 0;
    bytes += append_file(&mut tar, "hookd.db", snapshot)?;
    let token = dirs.root.join(crate::store::ADMIN_TOKEN_FILE);
    if token.exists() {
        append_file(&mut tar, crate::store::ADMIN_TOKEN_FILE, &token)?;
    }
    for id in &files {
        bytes += append_file(&mut tar, &format!("files/{id}"), &dirs.committed_path(id)?)?;
    }
    let mut lens = Vec::new();
    for id in segments {
        let path = super::segments::path(&dirs.segments, id);
        let mut f = File::open(&path)?;
        // The length now covers every byte the snapshot points at: segments only grow, and
        // their bytes are synced before the rows pointing at them commit.
        let len = f.metadata()?.len();
        for (at, n) in extents(&f, len)? {
            f.seek(SeekFrom::Start(at))?;
            append(
                &mut tar,
                &format!("segments/{id}@{at}"),
                n,
                (&mut f).take(n),
            )?;
            bytes += n;
        }
        lens.push(SegmentLen { id, len });
    }
    let manifest = Manifest {
        format: FORMAT,
        hookd_version: env!("CARGO_PKG_VERSION").into(),
        schema,
        created_at: crate::clock::rfc3339(crate::clock::now_ms()),
        messages: messages.max(0) as u64,
        body_files: files.len() as u64,
        segments: lens,
        bytes,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| StoreError::Invalid(format!("cannot write the manifest: {e}")))?;
    append(&mut tar, MANIFEST, json.len() as u64, &json[..])?;
    tar.into_inner()?.flush()?;
    Ok(manifest)
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
) -> Result<u64, StoreError> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    // A file that grew since (the WAL-less snapshot does not; a body file never does) is cut
    // at the length in the header, as the tar format needs.
    append(tar, name, len, f.take(len))?;
    Ok(len)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    data: impl Read,
) -> Result<(), StoreError> {
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o600);
    h.set_mtime((crate::clock::now_ms() / 1000).max(0) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, data)?;
    Ok(())
}

/// The (offset, length) of each stretch of `f` that holds data, below `len`: holes punched by
/// retention are skipped. Where the filesystem cannot say, the whole file is one stretch.
fn extents(f: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let seek = |at: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
            // SAFETY: lseek on an fd borrowed from `f`, open for the call; no memory involved.
            let r = unsafe { libc::lseek64(f.as_raw_fd(), at as libc::off64_t, whence) };
            if r >= 0 {
                return Ok(Some(r as u64));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENXIO) => Ok(None),
                _ => Err(e),
            }
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < len {
            let start = match seek(at, libc::SEEK_DATA) {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(vec![(0, len)]),
                Err(e) => return Err(e),
            };
            if start >= len {
                break;
            }
            let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
            out.push((start, end - start));
            at = end;
        }
        Ok(out)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = f;
        Ok(if len > 0 { vec![(0, len)] } else { Vec::new() })
    }
}

/// Why a backup could not be restored.
#[derive(thiserror::Error, Debug)]
pub enum RestoreError {
    #[error(
        "{} is not empty; restore into a new or empty data dir (the daemon must not be running on it)",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error("the backup is not usable: {0}")]
    Bad(String),
    #[error("cannot restore: {0}")]
    Io(#[from] io::Error),
    #[error("the restored database is not usable: {0}")]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RestoreError {
    fn from(e: rusqlite::Error) -> Self {
        RestoreError::Store(e.into())
    }
}

/// Restores the backup read from `archive` into `data_dir`, which must be empty or not exist.
/// Everything is written beside it first and moved into place at the end, so a cut-off archive
/// leaves no half-restored data dir.
pub fn restore(archive: impl Read, data_dir: &Path) -> Result<Manifest, RestoreError> {
    if let Ok(mut entries) = fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(RestoreError::NotEmpty(data_dir.to_path_buf()));
    }
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hookd".into());
    let staging = data_dir.with_file_name(format!(".{name}.restoring"));
    let _ = fs::remove_dir_all(&staging);
    let ended = std::cell::Cell::new(false);
    let source = Source {
        inner: archive,
        ended: &ended,
    };
    let result = unpack(source, &staging)
        .map_err(|e| match e {
            // Any failure once the file has ended means it ended too soon.
            RestoreError::Io(e) if ended.get() => RestoreError::Bad(format!(
                "it ends early ({e}): it was cut off while being written or copied"
            )),
            e => e,
        })
        .and_then(|m| {
            if data_dir.exists() {
                fs::remove_dir(data_dir)?;
            }
            fs::rename(&staging, data_dir)?;
            Ok(m)
        });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// The archive, noting when it has been read to its end.
struct Source<'a, R> {
    inner: R,
    ended: &'a std::cell::Cell<bool>,
}

impl<R: Read> Read for Source<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended.set(true);
        }
        Ok(n)
    }
}

fn unpack(archive: impl Read, root: &Path) -> Result<Manifest, RestoreError> {
    let dirs = Dirs::create(root)?;
    let mut manifest: Option<Manifest> = None;
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if manifest.is_some() {
            return Err(RestoreError::Bad(format!(
                "'{path}' follows the manifest, which must be last"
            )));
        }
        if path == MANIFEST {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            let m: Manifest = serde_json::from_slice(&text)
                .map_err(|e| RestoreError::Bad(format!("its manifest does not parse: {e}")))?;
            if m.format != FORMAT {
                return Err(RestoreError::Bad(format!(
                    "archive format {} (this hookd reads format {FORMAT})",
                    m.format
                )));
            }
            manifest = Some(m);
        } else if path == "hookd.db" {
            copy_to(&mut entry, &dirs.db())?;
        } else if path == crate::store::ADMIN_TOKEN_FILE {
            copy_to(&mut entry, &root.join(crate::store::ADMIN_TOKEN_FILE))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(
                root.join(crate::store::ADMIN_TOKEN_FILE),
                fs::Permissions::from_mode(0o600),
            )?;
        } else if let Some(id) = path.strip_prefix("files/").filter(|id| plain_name(id)) {
            copy_to(&mut entry, &dirs.files.join(id))?;
        } else if let Some((id, at)) = path
            .strip_prefix("segments/")
            .and_then(|s| s.split_once('@'))
            .and_then(|(id, at)| Some((id.parse::<u32>().ok()?, at.parse::<u64>().ok()?)))
        {
            let f = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(super::segments::path(&dirs.segments, id))?;
            let mut buf = vec![0; 1 << 20];
            let mut off = at;
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                f.write_all_at(&buf[..n], off)?;
                off += n as u64;
            }
        } else {
            return Err(RestoreError::Bad(format!(
                "unexpected entry '{path}' (not written by hookd backup?)"
            )));
        }
    }
    let m = manifest.ok_or_else(|| {
        RestoreError::Bad(
            "it has no manifest at its end: it was cut off while being written".into(),
        )
    })?;
    for s in &m.segments {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(super::segments::path(&dirs.segments, s.id))?;
        // Holes punched by retention come back as holes: only the length is set.
        f.set_len(s.len)?;
        f.sync_all()?;
    }
    let db = Connection::open(dirs.db())?;
    let check: String = db.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(RestoreError::Bad(format!(
            "its database fails a check: {check}"
        )));
    }
    drop(db);
    for d in [&dirs.files, &dirs.segments, &dirs.root] {
        super::files::sync_dir(d)?;
    }
    Ok(m)
}

/// A file name with no path in it.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && s != "." && s != ".." && !s.starts_with('.')
}

fn copy_to(from: &mut impl Read, to: &Path) -> io::Result<()> {
    let mut f = File::create(to)?;
    io::copy(from, &mut f)?;
    f.sync_all()
}
