//! Where a listener stopped: the seq of the last event it finished, in a small JSON file written
//! after each finished message, so a killed listener resumes there.
//!
//! The file is created whole (a temporary name, then renamed), then rewritten in place with one
//! write of a fixed length (the JSON padded with spaces): a rename per message cost more than the
//! forwarding itself, and a single small write is never half done when the process is killed.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::source::Filters;

/// The file's contents.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    /// What the cursor belongs to, so a file given to another listener is noticed.
    server: String,
    webhooks: Vec<String>,
    event_keys: Vec<String>,
    /// The last event finished (forwarded, refused by the app, or left out by the filters).
    seq: u64,
    updated_at: String,
}

/// A listener's state file.
pub struct State {
    path: PathBuf,
    server: String,
    filters: Filters,
    /// The file once created, and the length every write has.
    open: RefCell<Option<(File, usize)>>,
}

/// Room left in the file for the record to grow (a longer seq).
const SLACK: usize = 32;

impl State {
    /// The file at `path`, or the default one for this server and these filters.
    pub fn new(path: Option<PathBuf>, server: &str, filters: &Filters) -> Result<State, String> {
        let path = match path {
            Some(p) => p,
            None => default_path(server, filters)?,
        };
        Ok(State {
            path,
            server: server.to_string(),
            filters: filters.clone(),
            open: RefCell::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the last run stopped; `None` when this listener has not run before.
    pub fn load(&self) -> Result<Option<u64>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let saved: Saved = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a listener state file ({e}); delete it or pass --since",
                self.path.display()
            )
        })?;
        if saved.server != self.server {
            return Err(format!(
                "{} belongs to a listener of {}, not {}; pass another --state or --since",
                self.path.display(),
                saved.server,
                self.server
            ));
        }
        Ok(Some(saved.seq))
    }

    /// Records that everything up to `seq` is finished.
    pub fn save(&self, seq: u64) -> Result<(), String> {
        let saved = Saved {
            server: self.server.clone(),
            webhooks: self.filters.webhooks.clone(),
            event_keys: self.filters.event_keys.clone(),
            seq,
            updated_at: crate::clock::rfc3339(crate::clock::now_ms()),
        };
        let mut text = serde_json::to_string_pretty(&saved).map_err(|e| e.to_string())?;
        text.push('\n');
        let mut open = self.open.borrow_mut();
        if let Some((file, len)) = open.as_ref()
            && text.len() <= *len
        {
            let mut record = text.into_bytes();
            record.resize(*len, b' ');
            return file
                .write_all_at(&record, 0)
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()));
        }
        let len = text.len() + SLACK;
        let mut record = text.into_bytes();
        record.resize(len, b' ');
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let tmp = self.path.with_extension("json.partial");
        std::fs::write(&tmp, &record)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        *open = Some((file, len));
        Ok(())
    }
}

/// `<state dir>/hookd/listen/<hash of server and filters>.json`.
fn default_path(server: &str, filters: &Filters) -> Result<PathBuf, String> {
    let base = dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .ok_or("no state directory is known for this user; pass --state FILE")?;
    let mut webhooks = filters.webhooks.clone();
    webhooks.sort();
    let mut keys = filters.event_keys.clone();
    keys.sort();
    let id = serde_json::json!([server, webhooks, keys]).to_string();
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..8]);
    Ok(base
        .join("hookd")
        .join("listen")
        .join(format!("{hash}.json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_loads_back_and_belongs_to_its_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/state.json");
        let f = Filters::default();
        let s = State::new(Some(path.clone()), "http://a", &f).expect("state");
        assert_eq!(s.load(), Ok(None));
        s.save(41).expect("save");
        s.save(42).expect("save");
        assert_eq!(s.load(), Ok(Some(42)));
        // Rewritten in place, also when the record shrinks or grows.
        s.save(7).expect("save");
        assert_eq!(s.load(), Ok(Some(7)));
        s.save(u64::MAX).expect("save");
        assert_eq!(s.load(), Ok(Some(u64::MAX)));
        let again = State::new(Some(path.clone()), "http://a", &f).expect("state");
        again.save(9).expect("save");
        assert_eq!(s.load(), Ok(Some(9)));
        let other = State::new(Some(path.clone()), "http://b", &f).expect("state");
        assert!(other.load().is_err_and(|e| e.contains("http://a")));
        std::fs::write(&path, "nonsense").expect("write");
        assert!(s.load().is_err_and(|e| e.contains("--since")));
    }

    #[test]
    fn default_files_differ_by_server_and_filters_not_by_filter_order() {
        let f = |w: &[&str]| Filters {
            webhooks: w.iter().map(|s| s.to_string()).collect(),
            event_keys: vec![],
        };
        let p = |server: &str, w: &[&str]| default_path(server, &f(w)).ok();
        assert_eq!(p("http://a", &["1", "2"]), p("http://a", &["2", "1"]));
        assert_ne!(p("http://a", &["1"]), p("http://a", &["2"]));
        assert_ne!(p("http://a", &["1"]), p("http://b", &["1"]));
    }
}
