//! Store faults injected through the store traits: a blob store over
//! memory whose disk "fills" at a chosen byte or that goes down (as an
//! unreachable bucket: every lookup and commit fails), and an index that
//! can go down.

use async_trait::async_trait;
use berth_cache::{
    BlobStore, BlobWriter, CacheError, IndexStore, ListingKey, ListingRecord, Lookup, MemoryIndex,
    MemoryStore, RepoKey, TagKey, TagRecord,
};
use berth_oci::{Digest, Verified};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A memory store whose writers fail with "no space left on device" once
/// a blob reaches the byte set by [`FaultyStore::fill_at`].
#[derive(Debug)]
pub(crate) struct FaultyStore {
    inner: MemoryStore,
    full_at: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl FaultyStore {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            inner: MemoryStore::new(capacity),
            full_at: Arc::new(AtomicU64::new(u64::MAX)),
            down: Arc::default(),
        }
    }

    /// From now on, until [`FaultyStore::come_back`], lookups, sizes and
    /// commits fail.
    pub(crate) fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    pub(crate) fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.digests().len()
    }

    /// Writes past byte `n` of any blob fail from now on.
    pub(crate) fn fill_at(&self, n: u64) {
        self.full_at.store(n, Ordering::SeqCst);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inner.digests().is_empty()
    }
}

#[async_trait]
impl BlobStore for FaultyStore {
    async fn lookup(&self, digest: &Digest) -> Result<Lookup, CacheError> {
        unreachable_when(&self.down)?;
        self.inner.lookup(digest).await
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>, CacheError> {
        unreachable_when(&self.down)?;
        self.inner.size(digest).await
    }

    async fn reserve(&self, bytes: u64) -> Result<(), CacheError> {
        self.inner.reserve(bytes).await
    }

    async fn begin(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        Ok(Box::new(FaultyWriter {
            inner: self.inner.begin(digest, size).await?,
            written: 0,
            full_at: Arc::clone(&self.full_at),
            down: Arc::clone(&self.down),
        }))
    }

    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError> {
        unreachable_when(&self.down)?;
        self.inner.put_small(digest, bytes).await
    }
}

/// The error of a store that cannot be reached, while `down` is set.
fn unreachable_when(down: &AtomicBool) -> Result<(), CacheError> {
    if down.load(Ordering::SeqCst) {
        return Err(CacheError::Io {
            op: "look up",
            subject: "(faulty bucket)".to_owned(),
            error: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
    }
    Ok(())
}

#[derive(Debug)]
struct FaultyWriter {
    inner: Box<dyn BlobWriter>,
    written: u64,
    full_at: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

#[async_trait]
impl BlobWriter for FaultyWriter {
    fn tail(&self) -> Arc<dyn berth_cache::BlobContent> {
        self.inner.tail()
    }

    fn write(&mut self, chunks: &[Bytes]) -> Result<(), CacheError> {
        let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if self.written + len > self.full_at.load(Ordering::SeqCst) {
            return Err(CacheError::Io {
                op: "write",
                subject: Path::new("(faulty disk)").display().to_string(),
                error: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.written += len;
        self.inner.write(chunks)
    }

    async fn finish(self: Box<Self>, proof: Verified) -> Result<(), CacheError> {
        unreachable_when(&self.down)?;
        self.inner.finish(proof).await
    }

    fn abort(self: Box<Self>) {
        self.inner.abort();
    }
}

/// An index in memory that can be taken down: every call then fails.
#[derive(Debug, Default)]
pub(crate) struct FaultyIndex {
    inner: MemoryIndex,
    down: AtomicBool,
}

impl FaultyIndex {
    pub(crate) fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), CacheError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(CacheError::Io {
                op: "read",
                subject: "(index)".to_owned(),
                error: std::io::Error::other("the index is down"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl IndexStore for FaultyIndex {
    async fn tag(&self, key: &TagKey) -> Result<Option<TagRecord>, CacheError> {
        self.check()?;
        self.inner.tag(key).await
    }

    async fn put_tag(&self, key: &TagKey, record: TagRecord) -> Result<(), CacheError> {
        self.check()?;
        self.inner.put_tag(key, record).await
    }

    async fn manifest_type(&self, digest: &Digest) -> Result<Option<String>, CacheError> {
        self.check()?;
        self.inner.manifest_type(digest).await
    }

    async fn put_manifest_type(&self, digest: &Digest, media_type: &str) -> Result<(), CacheError> {
        self.check()?;
        self.inner.put_manifest_type(digest, media_type).await
    }

    async fn listing(&self, key: &ListingKey) -> Result<Option<ListingRecord>, CacheError> {
        self.check()?;
        self.inner.listing(key).await
    }

    async fn put_listing(&self, key: &ListingKey, record: ListingRecord) -> Result<(), CacheError> {
        self.check()?;
        self.inner.put_listing(key, record).await
    }

    async fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, CacheError> {
        self.check()?;
        self.inner.linked(repo, digest).await
    }

    async fn link(&self, repo: &RepoKey, digests: &[Digest]) -> Result<(), CacheError> {
        self.check()?;
        self.inner.link(repo, digests).await
    }

    async fn repositories(&self) -> Result<Vec<RepoKey>, CacheError> {
        self.check()?;
        self.inner.repositories().await
    }
}
