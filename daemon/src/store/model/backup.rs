//! What a backup archive holds.

use serde::{Deserialize, Serialize};

/// What a backup holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub hookd_version: String,
    /// The database's schema version.
    pub schema: i64,
    pub created_at: String,
    pub messages: u64,
    pub body_files: u64,
    /// Each segment file's length (its extents are entries of their own).
    pub segments: Vec<SegmentLen>,
    /// Bytes of database, files and segment data in the archive.
    pub bytes: u64,
}

/// A segment file's id and length.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SegmentLen {
    pub id: u32,
    pub len: u64,
}
