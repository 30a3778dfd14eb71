//! What the store holds, by repository: every committed blob with its
//! bytes on disk and last use, and every cached tag with the manifests it
//! answers with and the blobs they name (an index's platform manifests
//! and theirs too). Read from the index under the data directory and the
//! store's [`Shelf`], blocking, so the CLI can read it while berth serves;
//! pins and `cache du` / `cache ls` are built on it.

use crate::index::Stored;
use crate::{CacheError, Layout, Shelf, TagKey, TagRecord, io_err};
use berth_oci::{Digest, references};
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

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
    /// Read the catalog of the index under `layout` and the blobs on
    /// `shelf`.
    pub fn read(layout: &Layout, shelf: &dyn Shelf) -> Result<Self, CacheError> {
        let blobs = shelf
            .scan()?
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
                    manifest_closure(shelf, digest, &mut blobs, 2);
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
    shelf: &dyn Shelf,
    digest: Digest,
    blobs: &mut HashSet<Digest>,
    depth: u8,
) {
    blobs.insert(digest);
    let Some(bytes) = shelf.read_small(&digest) else {
        return;
    };
    let named = references(&bytes);
    blobs.extend(named.blobs.iter().map(|b| b.digest));
    if depth > 0 {
        for child in named.manifests {
            manifest_closure(shelf, child.digest, blobs, depth - 1);
        }
    }
}
