//! Tag answers and manifest media types, kept in memory (bounded in bytes)
//! and persisted as small files under `index/` so that a restart can still serve cached tags
//! when upstream is down.
//!
//! File names are the sha256 of the key, so no client-supplied string ever
//! becomes a path. Files are written to `tmp/` and renamed into place.

use crate::{CacheError, IndexStore, TagKey};
use async_trait::async_trait;
use berth_oci::Digest;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Memory for tag answers kept in memory (bytes); the rest are read from
/// disk.
const TAG_MEMORY: u64 = 32 << 20;
/// Memory for manifest media types kept in memory (bytes).
const TYPE_MEMORY: u64 = 8 << 20;
/// What an entry costs besides its strings (map and cache bookkeeping).
const ENTRY_OVERHEAD: usize = 128;

fn tag_weight(key: &TagKey, record: &TagRecord) -> u32 {
    let bytes = ENTRY_OVERHEAD
        + key.upstream.len()
        + key.repo.len()
        + key.tag.len()
        + key.accept.len()
        + record.digest.len()
        + record.media_type.len();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[allow(
    clippy::ptr_arg,
    reason = "the weigher's signature is fixed by the cache"
)]
fn type_weight(_: &Digest, media_type: &String) -> u32 {
    u32::try_from(ENTRY_OVERHEAD + media_type.len()).unwrap_or(u32::MAX)
}

/// What a tag resolved to, and when that was last confirmed upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type as upstream sent it.
    pub media_type: String,
    /// Manifest size in bytes.
    pub size: u64,
    /// Unix time in milliseconds of the last upstream confirmation.
    pub checked_at_ms: u64,
}

/// The index on local disk, with an in-memory copy of what was read.
#[derive(Debug)]
pub struct FsIndex {
    tags_dir: PathBuf,
    types_dir: PathBuf,
    tmp: PathBuf,
    next_tmp: AtomicU64,
    tags: Cache<TagKey, TagRecord>,
    types: Cache<Digest, String>,
}

impl FsIndex {
    /// Open (creating if needed) the index under `root`, using `tmp` (on
    /// the same filesystem) for atomic writes.
    pub fn open(root: &Path, tmp: &Path) -> Result<Self, CacheError> {
        let tags_dir = root.join("tags");
        let types_dir = root.join("manifests");
        for dir in [&tags_dir, &types_dir, &tmp.to_path_buf()] {
            std::fs::create_dir_all(dir).map_err(|e| CacheError::io("create", dir, e))?;
        }
        Ok(Self {
            tags_dir,
            types_dir,
            tmp: tmp.to_path_buf(),
            next_tmp: AtomicU64::new(0),
            tags: Cache::builder()
                .max_capacity(TAG_MEMORY)
                .weigher(tag_weight)
                .build(),
            types: Cache::builder()
                .max_capacity(TYPE_MEMORY)
                .weigher(type_weight)
                .build(),
        })
    }

    fn tag_path(&self, key: &TagKey) -> PathBuf {
        let id = Digest::of(
            format!(
                "{}\n{}\n{}\n{}",
                key.upstream, key.repo, key.tag, key.accept
            )
            .as_bytes(),
        );
        self.tags_dir.join(format!("{}.json", id.hex()))
    }

    async fn write_atomic(&self, dest: PathBuf, bytes: Vec<u8>) -> Result<(), CacheError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("index-{}-{n}", std::process::id()));
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| CacheError::io("write", &tmp, e))?;
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| CacheError::io("rename", &dest, e))
    }
}

#[async_trait]
impl IndexStore for FsIndex {
    async fn tag(&self, key: &TagKey) -> Option<TagRecord> {
        if let Some(r) = self.tags.get(key) {
            return Some(r);
        }
        let bytes = tokio::fs::read(self.tag_path(key)).await.ok()?;
        let record: TagRecord = serde_json::from_slice(&bytes).ok()?;
        self.tags.insert(key.clone(), record.clone());
        Some(record)
    }

    async fn put_tag(&self, key: &TagKey, record: TagRecord) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        self.tags.insert(key.clone(), record);
        self.write_atomic(self.tag_path(key), bytes).await
    }

    async fn manifest_type(&self, digest: &Digest) -> Option<String> {
        if let Some(t) = self.types.get(digest) {
            return Some(t);
        }
        let text = tokio::fs::read_to_string(self.types_dir.join(digest.hex()))
            .await
            .ok()?;
        self.types.insert(digest.clone(), text.clone());
        Some(text)
    }

    async fn put_manifest_type(&self, digest: &Digest, media_type: &str) -> Result<(), CacheError> {
        self.types.insert(digest.clone(), media_type.to_owned());
        self.write_atomic(
            self.types_dir.join(digest.hex()),
            media_type.as_bytes().to_vec(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tag_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = TagKey {
            upstream: "docker.io".into(),
            repo: "library/x".into(),
            tag: "latest".into(),
            accept: "a,b".into(),
        };
        let record = TagRecord {
            digest: Digest::of(b"m").to_string(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
            checked_at_ms: 42,
        };
        {
            let index = FsIndex::open(&dir.path().join("index"), &dir.path().join("tmp")).unwrap();
            index.put_tag(&key, record.clone()).await.unwrap();
            index
                .put_manifest_type(&Digest::of(b"m"), "t/x")
                .await
                .unwrap();
        }
        let index = FsIndex::open(&dir.path().join("index"), &dir.path().join("tmp")).unwrap();
        assert_eq!(index.tag(&key).await, Some(record));
        let other = TagKey {
            accept: "a".into(),
            ..key
        };
        assert_eq!(index.tag(&other).await, None);
        assert_eq!(
            index.manifest_type(&Digest::of(b"m")).await.as_deref(),
            Some("t/x")
        );
    }

    #[test]
    fn memory_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let index = FsIndex::open(&dir.path().join("index"), &dir.path().join("tmp")).unwrap();
        let record = TagRecord {
            digest: Digest::of(b"m").to_string(),
            media_type: "t".into(),
            size: 1,
            checked_at_ms: 0,
        };
        for i in 0..2_000 {
            let key = TagKey {
                upstream: "u".into(),
                repo: "r".into(),
                tag: i.to_string(),
                accept: "a".repeat(64 << 10),
            };
            index.tags.insert(key, record.clone());
        }
        index.tags.run_pending_tasks();
        assert!(index.tags.weighted_size() <= TAG_MEMORY);
        assert!(index.tags.entry_count() < 2_000);
    }
}
