//! `berth cache purge PATTERN`: remove the cached tags of the repositories
//! matching a pattern, and every blob only they need (a layer another
//! repository's tag also needs stays). A running berth does it itself, so
//! that its in-memory copies go too (see `Maintenance`); without one,
//! the command works on the data directory and the store directly.

use crate::{CacheError, Catalog, Layout, PinPattern, Shelf, TagKey};
use berth_oci::Digest;
use std::collections::HashSet;

/// What a purge removed.
#[derive(Debug, Default)]
pub struct PurgeReport {
    /// The tags removed.
    pub tags: Vec<TagKey>,
    /// The blobs (manifests included) removed.
    pub blobs: Vec<Digest>,
    /// Their bytes on disk.
    pub bytes: u64,
}

impl std::fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "purged {} tags and {} blobs ({} bytes)",
            self.tags.len(),
            self.blobs.len(),
            self.bytes
        )
    }
}

fn remove(path: &std::path::Path) -> Result<bool, CacheError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CacheError::io("remove", path, e)),
    }
}

/// Purge the repositories matching `pattern` from the index under
/// `layout` and the blobs on `shelf`; `removed` hears of each blob
/// removed. Blocking.
pub(crate) fn purge(
    layout: &Layout,
    shelf: &dyn Shelf,
    pattern: &PinPattern,
    removed: &dyn Fn(&Digest),
) -> Result<PurgeReport, CacheError> {
    let catalog = Catalog::read(layout, shelf)?;
    let name = |key: &TagKey| format!("{}/{}", key.upstream, key.repo);
    let (matching, others): (Vec<_>, Vec<_>) = catalog
        .tags
        .iter()
        .partition(|t| pattern.matches(&name(&t.key)));
    let kept: HashSet<&Digest> = others.iter().flat_map(|t| &t.blobs).collect();
    let mut report = PurgeReport::default();
    for tag in &matching {
        if remove(&layout.tag(&tag.key))? {
            report.tags.push(tag.key.clone());
        }
    }
    let gone: HashSet<&Digest> = matching
        .iter()
        .flat_map(|t| &t.blobs)
        .filter(|d| !kept.contains(d))
        .collect();
    for digest in gone {
        if shelf.remove(digest)? {
            let _ = remove(&layout.manifest_type(digest));
            removed(digest);
            report.bytes += catalog.blobs.get(digest).map_or(0, |b| b.bytes);
            report.blobs.push(*digest);
        }
    }
    Ok(report)
}

/// Purge the repositories matching `pattern` from the index under
/// `layout` and the blobs on `shelf`, with no berth serving them (nothing
/// in memory to tell). Blocking.
pub fn purge_store(
    layout: &Layout,
    shelf: &dyn Shelf,
    pattern: &PinPattern,
) -> Result<PurgeReport, CacheError> {
    purge(layout, shelf, pattern, &|_| {})
}
