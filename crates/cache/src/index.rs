//! Tag answers (see `tags.rs`), listings (`listings.rs`), manifest
//! media types and repository links (`links.rs`), kept in memory (bounded in bytes)
//! and persisted as small files under `index/` (paths: see `layout.rs`) so
//! that a restart can still serve cached tags when upstream is down.
//!
//! Files are written to `tmp/` and renamed into place. A file that is
//! missing is "not cached"; one that cannot be read is an error; one that
//! does not parse counts as not cached, and the next answer replaces it.

use crate::links::FsLinks;
use crate::{
    CacheError, IndexStore, Layout, ListingKey, ListingRecord, RepoKey, TagKey, TagRecord,
};
use async_trait::async_trait;
use berth_oci::Digest;
use moka::sync::Cache;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Memory for tag answers kept in memory (bytes); the rest are read from
/// disk.
const TAG_MEMORY: u64 = 32 << 20;
/// Memory for listings kept in memory (bytes).
const LISTING_MEMORY: u64 = 16 << 20;
/// Memory for manifest media types kept in memory (bytes).
const TYPE_MEMORY: u64 = 8 << 20;
/// What an entry costs besides its strings (map and cache bookkeeping).
const ENTRY_OVERHEAD: usize = 128;

fn tag_weight(key: &TagKey, record: &TagRecord) -> u32 {
    let answers: usize = record
        .answers
        .iter()
        .map(|a| ENTRY_OVERHEAD + a.accept.len() + a.digest.len() + a.media_type.len())
        .sum();
    let bytes = ENTRY_OVERHEAD + key.upstream.len() + key.repo.len() + key.tag.len() + answers;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn listing_weight(key: &ListingKey, record: &ListingRecord) -> u32 {
    let bytes = ENTRY_OVERHEAD
        + key.upstream.len()
        + key.repo.len()
        + key.request.len()
        + record.content_type.len()
        + record.link.as_ref().map_or(0, String::len)
        + record.body.len();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[allow(
    clippy::ptr_arg,
    reason = "the weigher's signature is fixed by the cache"
)]
fn type_weight(_: &Digest, media_type: &String) -> u32 {
    u32::try_from(ENTRY_OVERHEAD + media_type.len()).unwrap_or(u32::MAX)
}

/// The index on local disk, with an in-memory copy of what was read.
#[derive(Debug)]
pub struct FsIndex {
    layout: Layout,
    next_tmp: AtomicU64,
    tags: Cache<TagKey, TagRecord>,
    types: Cache<Digest, String>,
    listings: Cache<ListingKey, ListingRecord>,
    links: FsLinks,
}

impl FsIndex {
    /// Open (creating if needed) the index in the data directory `layout`.
    pub fn open(layout: &Layout) -> Result<Self, CacheError> {
        for dir in [
            layout.tags(),
            layout.listings(),
            layout.manifest_types(),
            layout.links(),
            layout.tmp(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| CacheError::io("create", &dir, e))?;
        }
        Ok(Self {
            layout: layout.clone(),
            next_tmp: AtomicU64::new(0),
            tags: Cache::builder()
                .max_capacity(TAG_MEMORY)
                .weigher(tag_weight)
                .build(),
            types: Cache::builder()
                .max_capacity(TYPE_MEMORY)
                .weigher(type_weight)
                .build(),
            listings: Cache::builder()
                .max_capacity(LISTING_MEMORY)
                .weigher(listing_weight)
                .build(),
            links: FsLinks::new(layout),
        })
    }

    async fn write_atomic(&self, dest: PathBuf, bytes: Vec<u8>) -> Result<(), CacheError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .layout
            .tmp()
            .join(format!("index-{}-{n}", std::process::id()));
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| CacheError::io("write", &tmp, e))?;
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| CacheError::io("rename", &dest, e))
    }

    /// Forget the in-memory copies of the answers of `tags` (their files
    /// were removed).
    pub fn forget_tags(&self, tags: &[TagKey]) {
        for key in tags {
            self.tags.invalidate(key);
        }
    }

    /// The record under `key`: from `memory`, else from the file at `path`
    /// (then kept in `memory`). A file written for another key (a hash
    /// collision) or of another shape counts as none.
    async fn read_record<K, V>(
        memory: &Cache<K, V>,
        key: &K,
        path: PathBuf,
    ) -> Result<Option<V>, CacheError>
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + DeserializeOwned + 'static,
        V: Clone + Send + Sync + DeserializeOwned + 'static,
    {
        if let Some(r) = memory.get(key) {
            return Ok(Some(r));
        }
        let Some(bytes) = read_file(&path).await? else {
            return Ok(None);
        };
        let Ok(stored) = serde_json::from_slice::<Stored<K, V>>(&bytes) else {
            return Ok(None);
        };
        if &stored.key != key {
            return Ok(None);
        }
        memory.insert(key.clone(), stored.record.clone());
        Ok(Some(stored.record))
    }

    /// Keep `record` under `key` in `memory` and, with its key, as JSON at
    /// `path`.
    async fn write_record<K, V>(
        &self,
        memory: &Cache<K, V>,
        key: &K,
        record: V,
        path: PathBuf,
    ) -> Result<(), CacheError>
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + Serialize + 'static,
        V: Clone + Send + Sync + Serialize + 'static,
    {
        let stored = Stored {
            key,
            record: &record,
        };
        let bytes = serde_json::to_vec(&stored).unwrap_or_default();
        memory.insert(key.clone(), record);
        self.write_atomic(path, bytes).await
    }
}

/// An index file: a record and the key it is for, so that the files can be
/// listed by what they hold (pins, `cache ls`) although they are named by
/// a hash.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stored<K, V> {
    pub(crate) key: K,
    pub(crate) record: V,
}

/// The contents of an index file; `None` when there is none.
async fn read_file(path: &PathBuf) -> Result<Option<Vec<u8>>, CacheError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CacheError::io("read", path, e)),
    }
}

#[async_trait]
impl IndexStore for FsIndex {
    async fn tag(&self, key: &TagKey) -> Result<Option<TagRecord>, CacheError> {
        Self::read_record(&self.tags, key, self.layout.tag(key)).await
    }

    async fn put_tag(&self, key: &TagKey, record: TagRecord) -> Result<(), CacheError> {
        self.write_record(&self.tags, key, record, self.layout.tag(key))
            .await
    }

    async fn manifest_type(&self, digest: &Digest) -> Result<Option<String>, CacheError> {
        if let Some(t) = self.types.get(digest) {
            return Ok(Some(t));
        }
        let Some(bytes) = read_file(&self.layout.manifest_type(digest)).await? else {
            return Ok(None);
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(None);
        };
        self.types.insert(*digest, text.clone());
        Ok(Some(text))
    }

    async fn put_manifest_type(&self, digest: &Digest, media_type: &str) -> Result<(), CacheError> {
        self.types.insert(*digest, media_type.to_owned());
        self.write_atomic(
            self.layout.manifest_type(digest),
            media_type.as_bytes().to_vec(),
        )
        .await
    }

    async fn listing(&self, key: &ListingKey) -> Result<Option<ListingRecord>, CacheError> {
        Self::read_record(&self.listings, key, self.layout.listing(key)).await
    }

    async fn put_listing(&self, key: &ListingKey, record: ListingRecord) -> Result<(), CacheError> {
        self.write_record(&self.listings, key, record, self.layout.listing(key))
            .await
    }

    async fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, CacheError> {
        self.links.linked(repo, digest).await
    }

    async fn link(&self, repo: &RepoKey, digests: &[Digest]) -> Result<(), CacheError> {
        self.links.link(repo, digests).await
    }

    async fn repositories(&self) -> Result<Vec<RepoKey>, CacheError> {
        let dir = self.layout.tags();
        tokio::task::spawn_blocking(move || tagged_repositories(&dir))
            .await
            .map_err(|e| CacheError::Io {
                op: "list",
                subject: "the tag index".to_owned(),
                error: std::io::Error::other(e),
            })?
    }
}

/// The repositories of the tag files in `dir`, sorted. A file that went
/// away or does not parse names none (the next answer replaces it).
fn tagged_repositories(dir: &std::path::Path) -> Result<Vec<RepoKey>, CacheError> {
    let files = match std::fs::read_dir(dir) {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::io("list", dir, e)),
    };
    let mut repos = std::collections::BTreeSet::new();
    for file in files {
        let path = file.map_err(|e| CacheError::io("list", dir, e))?.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CacheError::io("read", &path, e)),
        };
        if let Ok(stored) = serde_json::from_slice::<Stored<TagKey, serde::de::IgnoredAny>>(&bytes)
        {
            repos.insert(RepoKey {
                upstream: stored.key.upstream,
                repo: stored.key.repo,
            });
        }
    }
    Ok(repos.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TagAnswer;

    fn answer(accept: &str) -> TagAnswer {
        TagAnswer {
            accept: accept.to_owned(),
            digest: Digest::of(b"m").to_string(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
            checked_at_ms: 42,
        }
    }

    #[tokio::test]
    async fn tag_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let key = TagKey {
            upstream: "docker.io".into(),
            repo: "library/x".into(),
            tag: "latest".into(),
        };
        let record = TagRecord {
            answers: vec![answer("a,b")],
        };
        {
            let index = FsIndex::open(&layout).unwrap();
            index.put_tag(&key, record.clone()).await.unwrap();
            index
                .put_manifest_type(&Digest::of(b"m"), "t/x")
                .await
                .unwrap();
        }
        let index = FsIndex::open(&layout).unwrap();
        assert_eq!(index.tag(&key).await.unwrap(), Some(record));
        let other = TagKey {
            tag: "v1".into(),
            ..key
        };
        assert_eq!(index.tag(&other).await.unwrap(), None);
        assert_eq!(
            index
                .manifest_type(&Digest::of(b"m"))
                .await
                .unwrap()
                .as_deref(),
            Some("t/x")
        );
    }

    #[test]
    fn memory_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let index = FsIndex::open(&Layout::new(dir.path())).unwrap();
        let record = TagRecord {
            answers: vec![answer(&"a".repeat(64 << 10))],
        };
        for i in 0..2_000 {
            let key = TagKey {
                upstream: "u".into(),
                repo: "r".into(),
                tag: i.to_string(),
            };
            index.tags.insert(key, record.clone());
        }
        index.tags.run_pending_tasks();
        assert!(index.tags.weighted_size() <= TAG_MEMORY);
        assert!(index.tags.entry_count() < 2_000);
    }
}
