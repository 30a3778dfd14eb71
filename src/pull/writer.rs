//! The blocking side of a fill: one thread that receives body chunks in
//! order, appends them to the spool and publishes progress to the readers
//! tailing it, and one beside it that hashes the same chunks.

use crate::cache::{Progress, ProgressState, Spool};
use crate::oci::{Digest, DigestVerifier};
use crate::pull::PullError;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What the download side sends the writer.
#[derive(Debug)]
pub(super) enum Piece {
    /// The next bytes of the blob, as they arrived, and their total length.
    Chunks(Vec<Bytes>, u64),
    /// Every byte was sent.
    End,
}

/// What the writer hands back once the download side said `End`.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) spool: Spool,
    pub(super) bytes: u64,
    pub(super) verifier: DigestVerifier,
}

/// Batches queued between the writer and the hasher.
const HASH_QUEUE: usize = 8;

/// Start the writer for a blob expected to hash to `digest`. Hashing runs
/// on a thread of its own, beside the one that writes the spool, so a cold
/// blob costs the slower of the two rather than their sum. Readers may send
/// what is written before it is hashed: they hold back the last byte until
/// the fill task, having checked the digest, reports the blob complete.
pub(super) fn spawn(
    spool: Spool,
    digest: Digest,
    progress: watch::Sender<Progress>,
) -> (mpsc::Sender<Piece>, JoinHandle<Result<Written, PullError>>) {
    let (tx, mut rx) = mpsc::channel::<Piece>(16);
    let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(HASH_QUEUE);
    let hasher = tokio::task::spawn_blocking(move || {
        let mut verifier = DigestVerifier::new(digest);
        while let Ok(chunks) = hash_rx.recv() {
            for chunk in &chunks {
                verifier.update(chunk);
            }
        }
        verifier
    });
    let writer = tokio::task::spawn_blocking(move || {
        let mut spool = spool;
        let mut bytes = 0u64;
        while let Some(piece) = rx.blocking_recv() {
            match piece {
                Piece::Chunks(chunks, len) => {
                    if hash_tx.send(chunks.clone()).is_err() {
                        break;
                    }
                    spool.write_chunks(&chunks)?;
                    bytes += len;
                    progress.send_replace(Progress {
                        written: bytes,
                        state: ProgressState::Filling,
                    });
                }
                // Dropping `hash_tx` on return ends the hasher.
                Piece::End => return Ok((spool, bytes)),
            }
        }
        Err(PullError::Storage("blob download was abandoned".into()))
    });
    let handle = tokio::spawn(async move {
        let joined = |e: tokio::task::JoinError| {
            PullError::Storage(format!("blob writer thread failed: {e}"))
        };
        let written = writer.await.map_err(joined)?;
        let verifier = hasher.await.map_err(joined)?;
        let (spool, bytes) = written?;
        Ok(Written {
            spool,
            bytes,
            verifier,
        })
    });
    (tx, handle)
}
