//! The cache: a storage trait for content-addressed blobs, its local
//! filesystem implementation, readers that stream a blob while it is still
//! being written, and the index of tag answers and manifest media types.
//!
//! Uses only `oci` from this crate. The storage trait is what an S3 backend
//! implements later; everything above it sees only [`BlobStore`] and
//! [`IndexStore`].

mod fs;
mod hot;
mod index;
mod lock;
mod reader;
mod spool;
mod verify;

pub use fs::FsStore;
pub use hot::{HotBlobs, HotCache, HotManifest, HotManifests, Weighed};
pub use index::{FsIndex, TagRecord};
pub use lock::{DataDirLock, LOCK_FILE};
pub use reader::{FileSpan, Progress, ProgressState, stream_file};
pub use spool::Spool;
pub use verify::{VerifyReport, verify_store};

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::Stream;
use std::fmt::Debug;
use std::pin::Pin;

/// A stream of body chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The bytes of a blob to send: held in memory, a span of a local file,
/// which the HTTP edge can hand to the kernel without copying, or a stream
/// of chunks from anywhere else (upstream, an object store).
pub enum BlobBytes {
    /// All of them, in memory.
    Memory(Bytes),
    /// A range of a local file, complete or still being written.
    File(FileSpan),
    /// Chunks from elsewhere.
    Stream(ByteStream),
}

impl BlobBytes {
    /// The bytes as a stream of chunks, whatever their source.
    pub fn into_stream(self) -> ByteStream {
        match self {
            Self::Memory(bytes) => Box::pin(futures_util::stream::once(async { Ok(bytes) })),
            Self::File(span) => span.into_stream(),
            Self::Stream(stream) => stream,
        }
    }
}

impl Debug for BlobBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(bytes) => write!(f, "Memory({} bytes)", bytes.len()),
            Self::File(span) => f.debug_tuple("File").field(span).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// Errors from the cache's storage.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An I/O operation on the store failed.
    #[error("cache {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Which file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The cache filesystem has no room for what is being written.
    #[error("no room in the cache: {0}")]
    NoRoom(String),
    /// A blob found by `stat` was gone when it was opened.
    #[error("blob {0} vanished from the cache")]
    Vanished(Digest),
    /// Content did not hash to the digest it was stored under.
    #[error("content hashed to {actual}, not {expected}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
}

impl CacheError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Adapter for `map_err`: an I/O error during `op` on `path`.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
    move |e| CacheError::io(op, path, e)
}

/// Content-addressed blob storage shared by every upstream.
///
/// New content is written to a [`Spool`] (a local temporary file) and
/// becomes visible only through [`BlobStore::commit`], after its digest was
/// verified, so a reader can never see a partial or corrupt blob.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Size of a committed blob, or `None` if it is not cached.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, CacheError>;

    /// Bytes `start..end` of a committed blob; `None` if not cached.
    async fn read(
        &self,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<Option<BlobBytes>, CacheError>;

    /// A whole committed blob in memory, for small objects like manifests.
    /// `None` if not cached.
    async fn read_small(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError>;

    /// Verify and store a small object held in memory.
    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError>;

    /// A new spool file to write a blob into.
    async fn spool(&self) -> Result<Spool, CacheError>;

    /// Whether `bytes` more fit in the store now.
    async fn has_room(&self, bytes: u64) -> bool;

    /// Make a fully written, verified spool visible under `digest`.
    async fn commit(&self, spool: Spool, digest: &Digest) -> Result<(), CacheError>;
}

/// Small metadata next to the blobs: which digest a tag pointed to, and the
/// media type of each cached manifest.
#[async_trait]
pub trait IndexStore: Send + Sync + Debug {
    /// The record for a tag answer, if any.
    async fn tag(&self, key: &TagKey) -> Option<TagRecord>;
    /// Store or replace a tag answer.
    async fn put_tag(&self, key: &TagKey, record: TagRecord) -> Result<(), CacheError>;
    /// Media type of a cached manifest.
    async fn manifest_type(&self, digest: &Digest) -> Option<String>;
    /// Record the media type of a cached manifest.
    async fn put_manifest_type(&self, digest: &Digest, media_type: &str) -> Result<(), CacheError>;
}

/// What identifies one cached tag answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagKey {
    /// Upstream name.
    pub upstream: String,
    /// Repository, after upstream routing.
    pub repo: String,
    /// The tag.
    pub tag: String,
    /// Normalised client `Accept` set (see `oci::accept_key`).
    pub accept: String,
}
