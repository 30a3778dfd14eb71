//! `berth cache gc`: remove index entries that no longer count: tag files
//! of an older format, tag files whose every manifest has left the store,
//! and media-type records of manifests that are gone. Blobs themselves go
//! by eviction. Safe while berth serves: a removed entry is fetched again
//! on its next use.

use crate::index::Stored;
use crate::{CacheError, Layout, Shelf, TagKey, TagRecord, io_err};
use berth_oci::Digest;

/// What a collection removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Tag files removed.
    pub tags: u64,
    /// Media-type records removed.
    pub manifest_types: u64,
}

fn remove(path: &std::path::Path) -> Result<bool, CacheError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CacheError::io("remove", path, e)),
    }
}

fn entries(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, CacheError> {
    match std::fs::read_dir(dir) {
        Ok(files) => files
            .map(|f| f.map(|f| f.path()).map_err(io_err("list", dir)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CacheError::io("list", dir, e)),
    }
}

/// Collect the garbage of the index under `layout`, whose content is on
/// `shelf`.
pub fn collect_garbage(layout: &Layout, shelf: &dyn Shelf) -> Result<GcReport, CacheError> {
    let mut report = GcReport::default();
    for path in entries(&layout.tags())? {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CacheError::io("read", &path, e)),
        };
        let live = serde_json::from_slice::<Stored<TagKey, TagRecord>>(&bytes)
            .ok()
            .is_some_and(|stored| {
                stored.record.answers.iter().any(|a| {
                    a.digest
                        .parse::<Digest>()
                        .is_ok_and(|d| shelf.holds(&d).unwrap_or(true))
                })
            });
        if !live && remove(&path)? {
            report.tags += 1;
        }
    }
    for path in entries(&layout.manifest_types())? {
        let gone = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            .is_none_or(|d| !shelf.holds(&d).unwrap_or(true));
        if gone && remove(&path)? {
            report.manifest_types += 1;
        }
    }
    Ok(report)
}
