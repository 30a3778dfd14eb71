//! Serving a blob straight from upstream when the cache cannot take it
//! (disk full, or writes failing): the body is hashed as it passes and its
//! last chunk is held back until the digest matched, so even uncached a
//! client never receives a complete wrong blob. Also tracks the store's
//! health: after a write failure, new downloads bypass the cache for a
//! while, then caching is tried again; a failed read is logged once per
//! outage, not once per request.

use crate::source::Download;
use berth_cache::{ByteStream, CacheError};
use berth_metrics::Metrics;
use berth_oci::{Digest, DigestVerifier};
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// How long downloads bypass the cache after a write failed.
const BYPASS_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Whether the store is taking writes, and when a read last failed.
#[derive(Debug, Default)]
pub(super) struct DiskHealth {
    failed_at: Mutex<Option<Instant>>,
    read_failed_at: Mutex<Option<Instant>>,
}

impl DiskHealth {
    /// A write failed: bypass the cache for a while.
    pub(super) fn write_failed(&self) {
        if let Ok(mut f) = self.failed_at.lock() {
            *f = Some(Instant::now());
        }
    }

    /// Reading `what` of `digest` from the store failed, and the caller
    /// goes on as though it were not cached: count it, and warn at the
    /// first failure of an outage (none in the last
    /// [`BYPASS_AFTER_FAILURE`]), not at every request.
    pub(super) fn read_failed(
        &self,
        metrics: &Metrics,
        what: &str,
        digest: &Digest,
        error: &CacheError,
    ) {
        metrics.cache_read_failures.inc();
        let first = self.read_failed_at.lock().is_ok_and(|mut last| {
            let first = last.is_none_or(|t| t.elapsed() >= BYPASS_AFTER_FAILURE);
            *last = Some(Instant::now());
            first
        });
        if first {
            tracing::warn!(%digest, %error, "cannot read {what} from the cache; fetching it from upstream, uncached where the store cannot take it");
        } else {
            tracing::debug!(%digest, %error, "cannot read {what} from the cache");
        }
    }

    /// Whether new downloads should bypass the cache now.
    pub(super) fn bypass(&self) -> bool {
        self.failed_at
            .lock()
            .ok()
            .and_then(|f| *f)
            .is_some_and(|t| t.elapsed() < BYPASS_AFTER_FAILURE)
    }
}

/// Stream `download` to one client, verifying it against `digest`, and
/// cutting it off past `max` bytes.
pub(super) fn verified_stream(download: Download, digest: Digest, max: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::spawn(async move {
        let mut body = download.body;
        let mut verifier = DigestVerifier::new(digest);
        let mut held: Option<Bytes> = None;
        let mut received = 0u64;
        let fault = loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    received += chunk.len() as u64;
                    if received > max {
                        break format!("blob grew past max_blob_size ({max} bytes)");
                    }
                    verifier.update(&chunk);
                    if let Some(previous) = held.replace(chunk)
                        && tx.send(Ok(previous)).await.is_err()
                    {
                        return; // the client went away
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => match verifier.finish() {
                    Ok(_proof) => {
                        if let Some(last) = held {
                            let _ = tx.send(Ok(last)).await;
                        }
                        return;
                    }
                    Err(actual) => break format!("upstream content hashed to {actual}"),
                },
            }
        };
        tracing::error!(error = %fault, "uncached blob download failed; response aborted");
        let _ = tx.send(Err(std::io::Error::other(fault))).await;
    });
    Box::pin(ReceiverStream::new(rx))
}
