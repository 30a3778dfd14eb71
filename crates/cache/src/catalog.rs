//! What the store holds, by repository: every committed blob with its
//! bytes on disk and last use, and every cached tag with the manifests it
//! answers with and the blobs they name (an index's platform manifests
//! and theirs too). Read from the data directory alone, blocking, so the
//! CLI can read it while berth serves; pins and `cache du` / `cache ls`
//! are built on it.

use crate::index::Stored;
use crate::{CacheError, Layout, TagKey, TagRecord, io_err};
use berth_oci::{Digest, references};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::time::SystemTime;

/// A committed blob as a pass sees it.
pub(crate) struct Entry {
    pub(crate) digest: Digest,
    /// Bytes on disk.
    pub(crate) bytes: u64,
    /// Last use (the file's modification time).
    pub(crate) used: SystemTime,
}

/// Every committed blob under `layout`.
pub(crate) fn scan(layout: &Layout) -> Result<Vec<Entry>, CacheError> {
    let blobs = layout.blobs();
    let mut entries = Vec::new();
    for shard in std::fs::read_dir(&blobs).map_err(io_err("list", &blobs))? {
        let shard = shard.map_err(io_err("list", &blobs))?.path();
        let Ok(files) = std::fs::read_dir(&shard) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            let Some(digest) = layout.blob_digest(&path) else {
                continue;
            };
            // Removed since it was listed: nothing to count.
            let Ok(meta) = file.metadata() else {
                continue;
            };
            entries.push(Entry {
                digest,
                bytes: meta.blocks() * 512,
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(entries)
}

/// A cached tag and everything its answers need.
#[derive(Debug, Clone)]
pub struct CatalogTag {
    /// Upstream, repository and tag.
    pub key: TagKey,
    /// The manifests its answers name, then the blobs those name.
    pub blobs: HashSet<Digest>,
}

/// A committed blob.
#[derive(Debug, Clone, Copy)]
pub struct CatalogBlob {
    /// Bytes on disk.
    pub bytes: u64,
    /// Last use.
    pub used: SystemTime,
}

/// What the store holds.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every cached tag, sorted by name.
    pub tags: Vec<CatalogTag>,
    /// Every committed blob.
    pub blobs: HashMap<Digest, CatalogBlob>,
    /// Tag files that could not be read as one (an older format).
    pub unreadable_tags: Vec<std::path::PathBuf>,
}

impl Catalog {
    /// Read the catalog of the store under `layout`.
    pub fn read(layout: &Layout) -> Result<Self, CacheError> {
        let blobs = scan(layout)?
            .into_iter()
            .map(|e| {
                (
                    e.digest,
                    CatalogBlob {
                        bytes: e.bytes,
                        used: e.used,
                    },
                )
            })
            .collect();
        let mut catalog = Self {
            blobs,
            ..Self::default()
        };
        let dir = layout.tags();
        let files = match std::fs::read_dir(&dir) {
            Ok(files) => files,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(catalog),
            Err(e) => return Err(CacheError::io("list", &dir, e)),
        };
        for file in files {
            let path = file.map_err(io_err("list", &dir))?.path();
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CacheError::io("read", &path, e)),
            };
            let Ok(stored) = serde_json::from_slice::<Stored<TagKey, TagRecord>>(&bytes) else {
                catalog.unreadable_tags.push(path);
                continue;
            };
            let mut blobs = HashSet::new();
            for answer in &stored.record.answers {
                if let Ok(digest) = answer.digest.parse() {
                    manifest_closure(layout, digest, &mut blobs, 2);
                }
            }
            catalog.tags.push(CatalogTag {
                key: stored.key,
                blobs,
            });
        }
        catalog.tags.sort_by_key(|t| t.key.id());
        Ok(catalog)
    }

    /// Bytes on disk of those of `blobs` that are in the store.
    pub fn bytes_of<'a>(&self, blobs: impl IntoIterator<Item = &'a Digest>) -> u64 {
        blobs
            .into_iter()
            .filter_map(|d| self.blobs.get(d))
            .map(|b| b.bytes)
            .sum()
    }

    /// The latest use among those of `blobs` that are in the store.
    pub fn last_use<'a>(&self, blobs: impl IntoIterator<Item = &'a Digest>) -> Option<SystemTime> {
        blobs
            .into_iter()
            .filter_map(|d| self.blobs.get(d))
            .map(|b| b.used)
            .max()
    }
}

/// Add the manifest `digest`, what it names, and (`depth` levels down)
/// the manifests an index names, to `blobs`. A manifest not in the store
/// is added but names nothing.
pub(crate) fn manifest_closure(
    layout: &Layout,
    digest: Digest,
    blobs: &mut HashSet<Digest>,
    depth: u8,
) {
    blobs.insert(digest);
    let Ok(bytes) = std::fs::read(layout.blob(&digest)) else {
        return;
    };
    let named = references(&bytes);
    blobs.extend(named.blobs.iter().map(|b| b.digest));
    if depth > 0 {
        for child in named.manifests {
            manifest_closure(layout, child.digest, blobs, depth - 1);
        }
    }
}
