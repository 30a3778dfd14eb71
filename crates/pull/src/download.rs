//! A fill's download, streamed into the store's writer: body chunks in
//! batches to the writer thread (which hashes beside it), resumed from the
//! byte reached when the connection breaks, and stopped at the fill's
//! limits (`max_blob_size`, a filling disk, an unattended fill's share and
//! deadline). Ends with the writer and the proof that the digest matched.

use crate::PullError;
use crate::job::FillJob;
use crate::limits::{SPACE_CHECK_EVERY, SPACE_RESERVE, Unattended};
use crate::source::{Download, DownloadBody};
use crate::writer::{self, Piece, Written};
use berth_cache::{BlobWriter, Progress};
use berth_metrics::UpstreamLabels;
use berth_oci::Verified;
use berth_upstream::UpstreamError;
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, watch};

/// Why a fill ended without a verified blob.
#[derive(Debug)]
pub(super) enum Stop {
    /// Upstream, the digest or the disk failed.
    Failed(PullError),
    /// Nobody waits for it any more, and it is beyond what an unattended
    /// fill may take.
    Unattended(String),
}

impl<E: Into<PullError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

/// Bytes gathered from the body before they go to the writer at most.
const BATCH_BYTES: u64 = 1 << 20;
/// Chunks gathered at most.
const BATCH_CHUNKS: usize = 256;

/// Body chunks handed to the writer together.
struct Batch {
    chunks: Vec<Bytes>,
    bytes: u64,
    /// Set when the body ended (`Ok`) or broke (`Err`) after these chunks.
    end: Option<Result<(), UpstreamError>>,
}

/// The chunks that arrive without waiting, after the first (waited for),
/// up to [`BATCH_BYTES`]: one hand-off to the writer, one `writev`, one
/// progress wake-up for many socket reads when upstream is fast, and no
/// delay when it is slow.
async fn next_batch(body: &mut DownloadBody) -> Batch {
    let mut batch = Batch {
        chunks: Vec::new(),
        bytes: 0,
        end: None,
    };
    let mut next = body.next().await;
    loop {
        match next {
            Some(Ok(chunk)) => {
                batch.bytes += chunk.len() as u64;
                batch.chunks.push(chunk);
            }
            Some(Err(e)) => batch.end = Some(Err(e)),
            None => batch.end = Some(Ok(())),
        }
        if batch.end.is_some() || batch.bytes >= BATCH_BYTES || batch.chunks.len() >= BATCH_CHUNKS {
            return batch;
        }
        match body.next().now_or_never() {
            Some(more) => next = more,
            None => return batch,
        }
    }
}

/// Stream the body into the store's writer through the writer thread; when
/// the connection breaks, resume from the byte reached (on the same or the
/// next mirror) and keep hashing across the seam. Returns the writer and
/// the proof that the digest matched, once every byte arrived. Stops at `max_blob_size`, on
/// a filling disk (for a body of unknown length), and, once no client
/// waits, at the limits of an unattended fill.
pub(super) async fn copy(
    job: &FillJob,
    first: Download,
    store_writer: Box<dyn BlobWriter>,
    progress: &watch::Sender<Progress>,
    eager: Option<OwnedSemaphorePermit>,
) -> Result<(Box<dyn BlobWriter>, Verified), Stop> {
    let (tx, writer) = writer::spawn(store_writer, job.digest, progress.clone());
    let upstream = UpstreamLabels {
        upstream: job.source.name().to_owned(),
    };
    let upstream_bytes = job.metrics.upstream_bytes.get_or_create(&upstream).clone();
    let max = job.policy.fills.max_blob_size;
    let mut unattended = Unattended::new(Arc::clone(&job.unattended), eager);
    let size = first.size;
    let mut download = first;
    let mut received = 0u64;
    let mut space_checked = 0u64;
    let mut resumes_left = job.policy.resumes;
    let outcome: Result<(), Stop> = 'download: loop {
        let mut body = download.body;
        let broke = loop {
            let batch = {
                let next = next_batch(&mut body);
                tokio::pin!(next);
                tokio::select! {
                    biased;
                    batch = &mut next => batch,
                    why = unattended.must_stop(progress, size, received) => {
                        break 'download Err(Stop::Unattended(why));
                    }
                }
            };
            if received + batch.bytes > max {
                break 'download Err(PullError::Unusable {
                    upstream: upstream.upstream.clone(),
                    detail: format!("blob {} grew past max_blob_size ({max} bytes)", job.digest),
                }
                .into());
            }
            if size.is_none() && received + batch.bytes >= space_checked + SPACE_CHECK_EVERY {
                space_checked = received + batch.bytes;
                if job.blobs.reserve(SPACE_RESERVE).await.is_err() {
                    break 'download Err(PullError::NoRoom(format!(
                        "the cache disk is nearly full; blob {} of unknown size stopped after {received} bytes",
                        job.digest
                    ))
                    .into());
                }
            }
            if !batch.chunks.is_empty() {
                received += batch.bytes;
                upstream_bytes.inc_by(batch.bytes);
                if tx
                    .send(Piece::Chunks(batch.chunks, batch.bytes))
                    .await
                    .is_err()
                {
                    break 'download Ok(()); // the writer failed; its error is reported below
                }
            }
            match batch.end {
                None => {}
                Some(Err(e)) => break e,
                Some(Ok(())) => {
                    let _ = tx.send(Piece::End).await;
                    break 'download Ok(());
                }
            }
        };
        drop(body);
        if resumes_left == 0 || size.is_some_and(|s| received >= s) {
            break Err(broke.into());
        }
        resumes_left -= 1;
        job.metrics.resumes.get_or_create(&upstream).inc();
        tracing::warn!(digest = %job.digest, received, error = %broke, "blob download broke off; resuming");
        download = match job
            .source
            .fetch(&job.repo, &job.digest, received, &job.urgency)
            .await
        {
            Ok(d) if d.size.is_some() && size.is_some() && d.size != size => {
                break Err(PullError::Unusable {
                    upstream: upstream.upstream.clone(),
                    detail: format!("blob size changed from {size:?} to {:?} on resume", d.size),
                }
                .into());
            }
            Ok(d) => d,
            Err(e) => break Err(e.into()),
        };
    };
    drop(tx);
    let written = writer
        .await
        .map_err(|e| PullError::Internal(format!("blob writer task failed: {e}")))?;
    outcome?;
    let Written {
        writer,
        bytes,
        verifier,
    } = written?;
    if let Some(size) = size
        && size != bytes
    {
        return Err(PullError::Unusable {
            upstream: upstream.upstream,
            detail: format!("blob {} ended after {bytes} of {size} bytes", job.digest),
        }
        .into());
    }
    let proof = verifier
        .finish()
        .map_err(|actual| PullError::DigestMismatch {
            upstream: job.source.name().to_owned(),
            expected: job.digest,
            actual,
        })?;
    Ok((writer, proof))
}
