//! A store and an index held in memory, for in-process tests and for
//! embedding berth where no cache should outlive the process.
//!
//! A blob being written grows in memory ([`MemoryContent`]), and readers
//! tail it there; finishing moves it into the map. No file is involved.

use crate::store::{BlobStore, BlobWriter, Hit, Lookup, check_proof, check_whole};
use crate::{
    BlobContent, CacheError, IndexStore, ListingKey, ListingRecord, MemoryContent, RepoKey, TagKey,
    TagRecord,
};
use async_trait::async_trait;
use berth_oci::{Digest, Verified};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Blobs in memory, up to a capacity in bytes.
#[derive(Debug)]
pub struct MemoryStore {
    blobs: Arc<Mutex<HashMap<Digest, Bytes>>>,
    capacity: u64,
}

impl MemoryStore {
    /// An empty store that takes up to `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            blobs: Arc::default(),
            capacity,
        }
    }

    /// Bytes stored.
    pub fn used(&self) -> u64 {
        lock(&self.blobs).values().map(|b| b.len() as u64).sum()
    }

    /// The digests stored.
    pub fn digests(&self) -> Vec<Digest> {
        lock(&self.blobs).keys().copied().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn lookup(&self, digest: &Digest) -> Result<Lookup, CacheError> {
        Ok(match lock(&self.blobs).get(digest) {
            Some(bytes) => Lookup::Hit(Hit::memory(bytes.clone())),
            None => Lookup::Miss,
        })
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>, CacheError> {
        Ok(lock(&self.blobs).get(digest).map(|b| b.len() as u64))
    }

    async fn reserve(&self, bytes: u64) -> Result<(), CacheError> {
        let free = self.capacity.saturating_sub(self.used());
        if bytes < free {
            Ok(())
        } else {
            Err(CacheError::NoRoom(format!(
                "{bytes} bytes do not fit in memory ({free} free)"
            )))
        }
    }

    async fn begin(
        &self,
        digest: &Digest,
        _size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        Ok(Box::new(MemoryWriter {
            content: Arc::default(),
            digest: *digest,
            blobs: Arc::clone(&self.blobs),
        }))
    }

    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError> {
        check_whole(digest, &bytes)?;
        self.reserve(bytes.len() as u64).await?;
        lock(&self.blobs).insert(*digest, bytes);
        Ok(())
    }
}

/// A blob being written in memory.
#[derive(Debug)]
struct MemoryWriter {
    content: Arc<MemoryContent>,
    digest: Digest,
    blobs: Arc<Mutex<HashMap<Digest, Bytes>>>,
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    fn tail(&self) -> Arc<dyn BlobContent> {
        Arc::clone(&self.content) as Arc<dyn BlobContent>
    }

    fn write(&mut self, chunks: &[Bytes]) -> Result<(), CacheError> {
        self.content.append(chunks);
        Ok(())
    }

    async fn finish(self: Box<Self>, proof: Verified) -> Result<(), CacheError> {
        check_proof(&self.digest, &proof)?;
        lock(&self.blobs).insert(self.digest, self.content.to_bytes());
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}

/// Tag answers and manifest media types in memory.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    tags: Mutex<HashMap<TagKey, TagRecord>>,
    types: Mutex<HashMap<Digest, String>>,
    listings: Mutex<HashMap<ListingKey, ListingRecord>>,
    links: Mutex<std::collections::HashSet<(RepoKey, Digest)>>,
}

#[async_trait]
impl IndexStore for MemoryIndex {
    async fn tag(&self, key: &TagKey) -> Result<Option<TagRecord>, CacheError> {
        Ok(lock(&self.tags).get(key).cloned())
    }

    async fn put_tag(&self, key: &TagKey, record: TagRecord) -> Result<(), CacheError> {
        lock(&self.tags).insert(key.clone(), record);
        Ok(())
    }

    async fn manifest_type(&self, digest: &Digest) -> Result<Option<String>, CacheError> {
        Ok(lock(&self.types).get(digest).cloned())
    }

    async fn put_manifest_type(&self, digest: &Digest, media_type: &str) -> Result<(), CacheError> {
        lock(&self.types).insert(*digest, media_type.to_owned());
        Ok(())
    }

    async fn listing(&self, key: &ListingKey) -> Result<Option<ListingRecord>, CacheError> {
        Ok(lock(&self.listings).get(key).cloned())
    }

    async fn put_listing(&self, key: &ListingKey, record: ListingRecord) -> Result<(), CacheError> {
        lock(&self.listings).insert(key.clone(), record);
        Ok(())
    }

    async fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, CacheError> {
        Ok(lock(&self.links).contains(&(repo.clone(), *digest)))
    }

    async fn link(&self, repo: &RepoKey, digests: &[Digest]) -> Result<(), CacheError> {
        let mut links = lock(&self.links);
        links.extend(digests.iter().map(|d| (repo.clone(), *d)));
        Ok(())
    }

    async fn repositories(&self) -> Result<Vec<RepoKey>, CacheError> {
        let repos: std::collections::BTreeSet<RepoKey> = lock(&self.tags)
            .keys()
            .map(|k| RepoKey {
                upstream: k.upstream.clone(),
                repo: k.repo.clone(),
            })
            .collect();
        Ok(repos.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::DigestVerifier;

    #[tokio::test]
    async fn a_written_blob_is_tailed_then_stored_once_proven() {
        let store = MemoryStore::new(1 << 20);
        let data = b"some layer";
        let d = Digest::of(data);
        let mut writer = store.begin(&d, None).await.unwrap();
        let tail = writer.tail();
        writer.write(&[Bytes::from_static(data)]).unwrap();
        assert_eq!(&tail.read_at(0, data.len()).await.unwrap()[..], data);
        assert!(tail.local_file().is_none(), "no file behind memory");
        assert!(matches!(store.lookup(&d).await.unwrap(), Lookup::Miss));
        let mut v = DigestVerifier::new(d);
        v.update(data);
        writer.finish(v.finish().unwrap()).await.unwrap();
        let Lookup::Hit(hit) = store.lookup(&d).await.unwrap() else {
            panic!("finished, yet missed")
        };
        assert_eq!(hit.bytes().await.unwrap(), &data[..]);
        assert!(store.reserve(1 << 20).await.is_err());
    }
}
