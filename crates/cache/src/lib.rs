//! The cache: the storage seam (lookup → hit | miss → writer), its local
//! filesystem and in-memory implementations, readers that stream a blob
//! while it is still being written, the index of tag answers (several per
//! tag, by `Accept` set), tag lists and referrers, and manifest media types, and the one module that spells the on-disk layout.
//!
//! Uses only `berth-oci`. Everything above it sees the store through
//! [`BlobStore`] and [`IndexStore`], and the bytes to send as
//! [`BlobBytes`].

mod catalog;
mod content;
mod fs;
mod gc;
mod hot;
mod index;
mod layout;
mod lifecycle;
mod links;
mod listings;
mod lock;
mod maintenance;
mod memory;
mod purge;
mod reader;
mod s3;
mod s3_shelf;
mod s3_upload;
mod shelf;
mod spool;
mod store;
mod tags;
mod tiered;
mod verify;

pub use catalog::{Catalog, CatalogBlob, CatalogTag};
pub use content::{BlobContent, LocalFile, MemoryContent};
pub use fs::FsStore;
pub use gc::{GcReport, collect_garbage};
pub use hot::{HotBlobs, HotCache, HotManifest, HotManifests, Weighed};
pub use index::FsIndex;
pub use layout::Layout;
pub use lifecycle::{Lifecycle, PinPattern, store_pins, stored_pins};
pub use links::RepoKey;
pub use listings::{ListingKey, ListingRecord};
pub use lock::DataDirLock;
pub use maintenance::{Maintenance, Upkeep};
pub use memory::{MemoryIndex, MemoryStore};
pub use purge::{PurgeReport, purge_store};
pub use reader::{Progress, ProgressState, Span};
pub use s3::S3Store;
pub use s3_shelf::ObjectShelf;
pub use s3_upload::{ONE_PUT, part_size};
pub use shelf::{DiskShelf, Entry, Shelf};
pub use store::{BlobStore, BlobWriter, Hit, IndexStore, Lookup, StoreUsage};
pub use tags::{TagAnswer, TagKey, TagRecord};
pub use tiered::{PROMOTIONS, TieredStore};
pub use verify::{VerifyReport, verify_store};

use spool::Spool;

use berth_oci::Digest;
use bytes::Bytes;
use futures_util::Stream;
use std::fmt::Debug;
use std::pin::Pin;

/// Blobs up to this size count as small: they are kept in memory once
/// served, and a span this short is read in place rather than streamed.
pub const SMALL_BLOB: u64 = 64 << 10;

/// Told the digest of each blob the store removes (eviction), so that
/// copies held elsewhere (in memory) go too.
pub type RemovalHook = std::sync::Arc<dyn Fn(&Digest) + Send + Sync>;

/// A stream of body chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The bytes of a blob to send: held in memory, a span of stored (or
/// filling) content, which the HTTP edge can hand to the kernel without
/// copying when it is a local file, or a stream of chunks from anywhere
/// else (upstream).
pub enum BlobBytes {
    /// All of them, in memory.
    Memory(Bytes),
    /// A range of a blob in a store, complete or still being written.
    Span(Span),
    /// Chunks from elsewhere.
    Stream(ByteStream),
}

impl BlobBytes {
    /// The bytes as a stream of chunks, whatever their source.
    pub fn into_stream(self) -> ByteStream {
        match self {
            Self::Memory(bytes) => Box::pin(futures_util::stream::once(async { Ok(bytes) })),
            Self::Span(span) => span.into_stream(),
            Self::Stream(stream) => stream,
        }
    }
}

impl Debug for BlobBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(bytes) => write!(f, "Memory({} bytes)", bytes.len()),
            Self::Span(span) => f.debug_tuple("Span").field(span).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// Errors from the cache's storage.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An I/O operation on the store failed.
    /// The OS error is part of the message, not a separate source, so
    /// an error chain prints it once.
    #[error("cache {op} {subject}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// What it was done to: a file's path, or where there is no file,
        /// what the content is ("a cached blob", "the tag index").
        subject: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The cache filesystem has no room for what is being written.
    #[error("no room in the cache: {0}")]
    NoRoom(String),
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
            subject: path.display().to_string(),
            error: source,
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
