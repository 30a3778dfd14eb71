//! A bucket with a bounded local disk in front of it (`local_tier_size`):
//! the bucket holds every blob; the local tier (an [`FsStore`] with its own
//! size cap, least recently used evicted first) holds the hot ones, so
//! plain HTTP serves them with `sendfile` and a warm hit costs no request
//! to the bucket.
//!
//! - A fill spools in the tier's own spool, which feeds the bucket's
//!   upload as it grows. Once verified the upload is completed, then the
//!   blob committed to the tier: a blob is in the tier only
//!   if the bucket has it too, so evicting the tier loses nothing.
//! - A hit found only in the bucket is served from there, and copied into
//!   the tier in the background (verified again on the way), at most
//!   [`PROMOTIONS`] at a time.
//! - A blob larger than half the tier never enters it: it would push out
//!   everything else. It goes to the bucket alone.
//! - What leaves the bucket (its lifecycle, a purge) leaves the tier too.

use crate::s3_upload::PartUploader;
use crate::store::{BlobStore, BlobWriter, Hit, Lookup};
use crate::{
    BlobContent, CacheError, DiskShelf, FsStore, RemovalHook, S3Store, Shelf as _, Span, StoreUsage,
};
use async_trait::async_trait;
use berth_oci::{Digest, DigestVerifier, Verified};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Copies from the bucket into the tier running at once.
pub const PROMOTIONS: usize = 2;
/// Bytes handed to the tier's writer at a time while copying.
const BATCH: usize = 1 << 20;

/// A bucket, and a local disk in front of it.
#[derive(Debug)]
pub struct TieredStore {
    local: Arc<FsStore>,
    remote: Arc<S3Store>,
    /// The tier's size cap (its lifecycle keeps it there).
    capacity: u64,
    promotions: Arc<Semaphore>,
    /// Digests being copied into the tier now.
    promoting: Arc<Mutex<HashSet<Digest>>>,
}

impl TieredStore {
    /// `remote` behind `local`, whose lifecycle the caller started with a
    /// `max_size` of `capacity`.
    pub fn new(local: Arc<FsStore>, remote: Arc<S3Store>, capacity: u64) -> Self {
        // What leaves the bucket (eviction, purge) leaves the tier too.
        let tier = DiskShelf::new(local.layout().clone());
        remote.on_removal(Arc::new(move |digest: &Digest| {
            let _ = tier.remove(digest);
        }));
        Self {
            local,
            remote,
            capacity,
            promotions: Arc::new(Semaphore::new(PROMOTIONS)),
            promoting: Arc::default(),
        }
    }

    /// Whether a blob of `size` bytes may enter the tier.
    fn fits(&self, size: u64) -> bool {
        size <= self.capacity / 2
    }

    /// A writer of `digest`: spooled in the tier when it fits, else in the
    /// bucket's own spool; with `stream_parts`, its parts go up while it
    /// is written, else all of it once it is finished.
    async fn writer(
        &self,
        digest: &Digest,
        size: Option<u64>,
        stream_parts: bool,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        if !size.is_some_and(|size| self.fits(size)) {
            return if stream_parts {
                self.remote.begin(digest, size).await
            } else {
                self.remote.begin_copy(digest, size).await
            };
        }
        let local = self.local.begin(digest, size).await?;
        let parts = stream_parts
            .then(|| self.remote.start_parts(digest, local.tail(), size))
            .flatten();
        Ok(Box::new(TieredWriter {
            parts,
            local,
            remote: Arc::clone(&self.remote),
            digest: *digest,
            written: 0,
        }))
    }

    /// Copy a hit from the bucket into the tier, in the background,
    /// unless a copy of it runs already or [`PROMOTIONS`] do.
    fn promote(&self, digest: Digest, hit: &Hit) {
        if !self.fits(hit.size()) {
            return;
        }
        let Ok(permit) = Arc::clone(&self.promotions).try_acquire_owned() else {
            return;
        };
        if !self
            .promoting
            .lock()
            .is_ok_and(|mut running| running.insert(digest))
        {
            return;
        }
        let (local, promoting) = (Arc::clone(&self.local), Arc::clone(&self.promoting));
        let hit = hit.clone();
        tokio::spawn(async move {
            if let Err(e) = copy_into(&local, digest, &hit).await {
                tracing::debug!(%digest, error = %e, "blob not copied into the local tier");
            }
            if let Ok(mut running) = promoting.lock() {
                running.remove(&digest);
            }
            drop(permit);
        });
    }
}

/// Copy `hit` into `local` as `digest`, verifying it on the way.
async fn copy_into(local: &FsStore, digest: Digest, hit: &Hit) -> Result<(), CacheError> {
    let failed = |error: std::io::Error| CacheError::Io {
        op: "copy into the local tier",
        subject: format!("blob {digest}"),
        error,
    };
    local.reserve(hit.size()).await?;
    let mut writer = local.begin(&digest, Some(hit.size())).await?;
    let mut verifier = DigestVerifier::new(digest);
    let mut body = Span::complete(hit.content(), 0, hit.size()).into_stream();
    let mut batch = BytesMut::new();
    loop {
        let chunk = body.next().await.transpose().map_err(failed)?;
        if let Some(chunk) = &chunk {
            verifier.update(chunk);
            batch.extend_from_slice(chunk);
        }
        if batch.len() >= BATCH || (chunk.is_none() && !batch.is_empty()) {
            let bytes = batch.split().freeze();
            writer = tokio::task::spawn_blocking(move || writer.write(&[bytes]).map(|()| writer))
                .await
                .map_err(|e| failed(std::io::Error::other(e)))??;
        }
        if chunk.is_none() {
            break;
        }
    }
    let proof = verifier
        .finish()
        .map_err(|actual| CacheError::DigestMismatch {
            expected: digest,
            actual,
        })?;
    writer.finish(proof).await
}

#[async_trait]
impl BlobStore for TieredStore {
    async fn lookup(&self, digest: &Digest) -> Result<Lookup, CacheError> {
        if let Lookup::Hit(hit) = self.local.lookup(digest).await? {
            return Ok(Lookup::Hit(hit));
        }
        let found = self.remote.lookup(digest).await?;
        if let Lookup::Hit(hit) = &found {
            self.promote(*digest, hit);
        }
        Ok(found)
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>, CacheError> {
        match self.local.size(digest).await? {
            Some(size) => Ok(Some(size)),
            None => self.remote.size(digest).await,
        }
    }

    async fn reserve(&self, bytes: u64) -> Result<(), CacheError> {
        self.remote.reserve(bytes).await
    }

    async fn begin(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        self.writer(digest, size, true).await
    }

    async fn begin_copy(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        self.writer(digest, size, false).await
    }

    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError> {
        self.remote.put_small(digest, bytes).await
    }

    fn record_use(&self, digest: &Digest) {
        self.local.record_use(digest);
    }

    fn on_removal(&self, hook: RemovalHook) {
        // Only what leaves the bucket is gone; the tier's evictions are not.
        self.remote.on_removal(hook);
    }

    fn usage(&self) -> StoreUsage {
        self.remote.usage()
    }
}

/// A fill spooled in the tier, uploaded once verified, then kept in the
/// tier.
#[derive(Debug)]
struct TieredWriter {
    local: Box<dyn BlobWriter>,
    /// The bucket's upload, streamed while the fill is written.
    parts: Option<PartUploader>,
    remote: Arc<S3Store>,
    digest: Digest,
    written: u64,
}

#[async_trait]
impl BlobWriter for TieredWriter {
    fn tail(&self) -> Arc<dyn BlobContent> {
        self.local.tail()
    }

    fn write(&mut self, chunks: &[Bytes]) -> Result<(), CacheError> {
        self.local.write(chunks)?;
        self.written += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        if let Some(parts) = &self.parts {
            parts.written(self.written);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>, proof: Verified) -> Result<(), CacheError> {
        let spooled = self.local.tail();
        self.remote
            .put_verified(
                &self.digest,
                spooled.as_ref(),
                self.written,
                &proof,
                self.parts,
            )
            .await?;
        if let Err(e) = self.local.finish(proof).await {
            // The bucket has it: only the fast copy is missing.
            tracing::warn!(digest = %self.digest, error = %e, "blob stored in the bucket but not kept in the local tier");
        }
        Ok(())
    }

    fn abort(self: Box<Self>) {
        self.local.abort();
    }
}
