//! Saving a captured file to the working directory: a name the sender cannot turn into a path
//! or a terminal escape, and a new file that is never one already there (nor a symlink's target).

use std::io::Write;
use std::path::{Path, PathBuf};

/// What a file part is saved as: the last component of the name the sender gave, without
/// control characters (they would reach the terminal in every listing), or `fallback` when
/// nothing usable is left (`..`, `/`, empty).
pub fn file_name(sent: Option<&str>, fallback: &str) -> String {
    let base = sent
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if base.is_empty() || base == "." || base == ".." {
        fallback.to_string()
    } else {
        base
    }
}

/// Writes `bytes` to a new file `name` in `dir`, or `name (1)`, `name (2)`, … when that exists;
/// the path written. The file is created exclusively (`O_EXCL`), which never follows a symlink,
/// dangling or not, so a planted link cannot redirect the write.
pub fn save_new(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    for i in 0u32.. {
        let path = match i {
            0 => dir.join(name),
            i => dir.join(format!("{name} ({i})")),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(bytes)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && i < 10_000 => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_only_their_last_component_and_no_control_characters() {
        assert_eq!(file_name(Some("report.pdf"), "f"), "report.pdf");
        assert_eq!(file_name(Some("../../etc/passwd"), "f"), "passwd");
        assert_eq!(file_name(Some("C:\\Users\\x\\a.txt"), "f"), "a.txt");
        assert_eq!(
            file_name(Some("evil\x1b]0;pwned\x07.txt"), "f"),
            "evil]0;pwned.txt"
        );
        assert_eq!(file_name(Some("a\nb\r.txt"), "f"), "ab.txt");
        assert_eq!(file_name(Some(".."), "f"), "f");
        assert_eq!(file_name(Some("dir/"), "f"), "f");
        assert_eq!(file_name(Some("\x07"), "f"), "f");
        assert_eq!(file_name(None, "upload-0"), "upload-0");
        assert_eq!(file_name(Some("naïve €.txt"), "f"), "naïve €.txt");
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_symlink_is_not_followed_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("report.pdf")).expect("symlink");
        std::fs::write(dir.path().join("report.pdf (1)"), b"mine").expect("existing");

        let saved = save_new(dir.path(), "report.pdf", b"payload").expect("saved");
        assert_eq!(saved, dir.path().join("report.pdf (2)"));
        assert_eq!(std::fs::read(&saved).expect("read"), b"payload");
        assert!(!target.exists(), "the link's target was not created");
        assert_eq!(
            std::fs::read(dir.path().join("report.pdf (1)")).expect("read"),
            b"mine",
            "an existing file is kept"
        );
    }
}
