//! The storage seam, shaped after a lookup / hit / miss split:
//! - [`BlobStore::lookup`] gives a [`Hit`] that holds what it needs to be
//!   served (its [`BlobContent`]: an open file, the bytes, an object), so
//!   an eviction after the lookup cannot fail the response, and one hit
//!   serves any range as a stream (a local file is an optional capability,
//!   for `sendfile`);
//! - on a miss, [`BlobStore::reserve`] makes room (where eviction plugs
//!   in) and [`BlobStore::begin`] gives a [`BlobWriter`] that is written,
//!   then finished (verified, then committed) or aborted, while waiting
//!   clients read its tail (a [`BlobContent`] too);
//! - [`IndexStore`] keeps tag answers, listings and manifest media types, and says
//!   when it fails rather than answering "not cached".
//!
//! The local disk (`FsStore`, `FsIndex`), memory (`MemoryStore`,
//! `MemoryIndex`), an S3 bucket (`S3Store`) and a bucket behind a local
//! tier (`TieredStore`) implement it.

use crate::{
    BlobBytes, BlobContent, CacheError, ListingKey, ListingRecord, MemoryContent, RepoKey,
    SMALL_BLOB, Span, TagKey, TagRecord,
};
use async_trait::async_trait;
use berth_oci::{Digest, Verified};
use bytes::Bytes;
use std::fmt::Debug;
use std::sync::Arc;

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The blob is stored: serve it from here.
    Hit(Hit),
    /// It is not.
    Miss,
}

/// A stored blob, held open: what it takes to serve it stays valid
/// whatever happens to the store afterwards.
#[derive(Debug, Clone)]
pub struct Hit {
    size: u64,
    content: Arc<dyn BlobContent>,
}

impl Hit {
    /// A hit on `content`, `size` bytes long.
    pub fn new(content: Arc<dyn BlobContent>, size: u64) -> Self {
        Self { size, content }
    }

    /// A hit on bytes held in memory.
    pub fn memory(bytes: Bytes) -> Self {
        let size = bytes.len() as u64;
        Self::new(Arc::new(MemoryContent::complete(bytes)), size)
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A short-lived URL the client may fetch the blob from itself, where
    /// the store offers one (see [`BlobContent::redirect_url`]).
    pub async fn redirect_url(&self) -> Option<String> {
        self.content.redirect_url().await
    }

    /// Where its bytes are read from.
    pub(crate) fn content(&self) -> Arc<dyn BlobContent> {
        Arc::clone(&self.content)
    }

    /// Bytes `start..end` (clamped to the blob) to send. A span up to
    /// [`SMALL_BLOB`] that can be read at once (memory, a local file) is
    /// read right here, which beats handing it to another thread or to
    /// `sendfile`.
    pub fn read(&self, start: u64, end: u64) -> Result<BlobBytes, CacheError> {
        let end = end.min(self.size);
        let start = start.min(end);
        let span = Span::complete(Arc::clone(&self.content), start, end);
        if end - start > SMALL_BLOB {
            return Ok(BlobBytes::Span(span));
        }
        match span.read_now() {
            Some(read) => read.map(BlobBytes::Memory).map_err(|error| CacheError::Io {
                op: "read",
                subject: "a cached blob".to_owned(),
                error,
            }),
            None => Ok(BlobBytes::Span(span)),
        }
    }

    /// The whole blob in memory, for small objects such as manifests.
    pub async fn bytes(&self) -> Result<Bytes, CacheError> {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        self.content
            .read_at(0, size)
            .await
            .map_err(|error| CacheError::Io {
                op: "read",
                subject: "a cached blob".to_owned(),
                error,
            })
    }
}

/// Content-addressed blob storage shared by every upstream.
///
/// New content becomes visible only through [`BlobWriter::finish`], which
/// takes the proof that it hashed to its digest, so a reader can never see
/// a partial or corrupt blob.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Whether `digest` is stored, and if so, a hit to serve it from.
    async fn lookup(&self, digest: &Digest) -> Result<Lookup, CacheError>;

    /// The size of a stored blob, without opening it (for a HEAD, which
    /// serves no bytes); `None` when it is not stored.
    async fn size(&self, digest: &Digest) -> Result<Option<u64>, CacheError>;

    /// Make sure `bytes` more fit in the store now; [`CacheError::NoRoom`]
    /// when they do not.
    async fn reserve(&self, bytes: u64) -> Result<(), CacheError>;

    /// Start writing the blob `digest`, of `size` bytes when known.
    async fn begin(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError>;

    /// [`BlobStore::begin`] for a copy of a blob that another writer (another
    /// replica) is storing at the same time, and that is most likely dropped
    /// once that one has: a store shared by the replicas sends nothing of it
    /// before it is finished; a store of this replica's own begins as usual.
    async fn begin_copy(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        self.begin(digest, size).await
    }

    /// Verify and store a small object held in memory, such as a manifest.
    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError>;

    /// `digest` was served from a copy outside the store (memory): count
    /// it as used, for eviction by last use.
    fn record_use(&self, _digest: &Digest) {}

    /// Call `hook` with the digest of each blob the store removes.
    fn on_removal(&self, _hook: crate::RemovalHook) {}

    /// What the store holds against its cap, as far as it knows.
    fn usage(&self) -> StoreUsage {
        StoreUsage::default()
    }
}

/// Bytes a store holds and the cap it is kept under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Bytes held; `None` until counted (a local store counts at its first
    /// eviction pass, so only when a cap or an age limit is set).
    pub bytes: Option<u64>,
    /// The size cap; `None`: unbounded.
    pub cap: Option<u64>,
}

/// A blob being written. Readers tail it through [`BlobWriter::tail`]
/// while it is written; it becomes part of the store only when finished.
/// Dropping it unfinished is the same as [`BlobWriter::abort`].
#[async_trait]
pub trait BlobWriter: Send + Debug {
    /// The bytes written so far, for the clients that wait on the blob;
    /// valid after the writer is finished or aborted too.
    fn tail(&self) -> Arc<dyn BlobContent>;

    /// Append chunks in order. Blocking: call it from a thread of its own.
    fn write(&mut self, chunks: &[Bytes]) -> Result<(), CacheError>;

    /// Make the written bytes visible under their digest. `proof` must be
    /// for the digest the writer was begun with.
    async fn finish(self: Box<Self>, proof: Verified) -> Result<(), CacheError>;

    /// Discard what was written.
    fn abort(self: Box<Self>);
}

/// Small metadata next to the blobs: which digest a tag pointed to, and the
/// media type of each cached manifest. Every read says whether it failed:
/// an outage is never taken for "not cached".
#[async_trait]
pub trait IndexStore: Send + Sync + Debug {
    /// The answers cached for a tag, if any.
    async fn tag(&self, key: &TagKey) -> Result<Option<TagRecord>, CacheError>;
    /// Store or replace the answers for a tag.
    async fn put_tag(&self, key: &TagKey, record: TagRecord) -> Result<(), CacheError>;
    /// Media type of a cached manifest, if recorded.
    async fn manifest_type(&self, digest: &Digest) -> Result<Option<String>, CacheError>;
    /// Record the media type of a cached manifest.
    async fn put_manifest_type(&self, digest: &Digest, media_type: &str) -> Result<(), CacheError>;
    /// A cached tag list or referrers answer, if any.
    async fn listing(&self, key: &ListingKey) -> Result<Option<ListingRecord>, CacheError>;
    /// Store or replace a tag list or referrers answer.
    async fn put_listing(&self, key: &ListingKey, record: ListingRecord) -> Result<(), CacheError>;
    /// Whether `repo` is known to reference `digest` (see `links`).
    async fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, CacheError>;
    /// Record that `repo` references each of `digests`.
    async fn link(&self, repo: &RepoKey, digests: &[Digest]) -> Result<(), CacheError>;
    /// Every repository with a cached tag, sorted (the catalog).
    async fn repositories(&self) -> Result<Vec<RepoKey>, CacheError>;
}

/// Refuse to commit bytes proven to hash to anything but `expected`.
pub(crate) fn check_proof(expected: &Digest, proof: &Verified) -> Result<(), CacheError> {
    if proof.digest() == expected {
        Ok(())
    } else {
        Err(CacheError::DigestMismatch {
            expected: *expected,
            actual: *proof.digest(),
        })
    }
}

/// Refuse a small object put whole unless it hashes to `digest`.
pub(crate) fn check_whole(digest: &Digest, bytes: &[u8]) -> Result<(), CacheError> {
    let actual = Digest::of(bytes);
    if &actual == digest {
        Ok(())
    } else {
        Err(CacheError::DigestMismatch {
            expected: *digest,
            actual,
        })
    }
}
