//! The spool: receive writes a body too large to keep in memory into a file in the store's
//! `incoming_dir`, fsyncs it (and the directory) and names it in its `Capture`; the adapter takes
//! the file over when the capture commits.

use std::fs::File;
use std::io;
use std::path::Path;

/// fsyncs a directory so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
