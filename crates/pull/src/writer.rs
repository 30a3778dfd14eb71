//! The blocking side of a fill: a thread of its own that receives body
//! chunks in order, appends them to the store's writer and publishes
//! progress to the readers tailing it, and one beside it that hashes the
//! same chunks.
//!
//! These are dedicated threads, not the runtime's blocking pool: readers
//! of slow clients may take every thread of that pool, and the fills they
//! wait on must still make progress.

use crate::PullError;
use berth_cache::{BlobWriter, Progress, ProgressState};
use berth_oci::{Digest, DigestVerifier};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
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
    pub(super) writer: Box<dyn BlobWriter>,
    pub(super) bytes: u64,
    pub(super) verifier: DigestVerifier,
}

/// Batches queued between the writer and the hasher.
const HASH_QUEUE: usize = 8;

/// Start the writer for a blob expected to hash to `digest`. Hashing runs
/// on a thread of its own, beside the one that writes the blob, so a cold
/// blob costs the slower of the two rather than their sum. Readers may send
/// what is written before it is hashed: they hold back the last byte until
/// the fill task, having checked the digest, reports the blob complete.
pub(super) fn spawn(
    writer: Box<dyn BlobWriter>,
    digest: Digest,
    progress: watch::Sender<Progress>,
) -> (mpsc::Sender<Piece>, JoinHandle<Result<Written, PullError>>) {
    let (tx, rx) = mpsc::channel::<Piece>(16);
    let (done_tx, done_rx) = oneshot::channel();
    let started = std::thread::Builder::new()
        .name("berth-fill".to_owned())
        .spawn(move || {
            let _ = done_tx.send(write(writer, digest, &progress, rx));
        });
    let handle = tokio::spawn(async move {
        started.map_err(|e| PullError::Internal(format!("cannot start a blob writer: {e}")))?;
        done_rx
            .await
            .map_err(|_| PullError::Internal("blob writer thread failed".into()))?
    });
    (tx, handle)
}

/// The writer thread: write and publish until `End`, with the hasher
/// thread beside it.
fn write(
    writer: Box<dyn BlobWriter>,
    digest: Digest,
    progress: &watch::Sender<Progress>,
    mut rx: mpsc::Receiver<Piece>,
) -> Result<Written, PullError> {
    let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(HASH_QUEUE);
    let hasher = std::thread::Builder::new()
        .name("berth-fill-hash".to_owned())
        .spawn(move || {
            let mut verifier = DigestVerifier::new(digest);
            while let Ok(chunks) = hash_rx.recv() {
                for chunk in &chunks {
                    verifier.update(chunk);
                }
            }
            verifier
        })
        .map_err(|e| PullError::Internal(format!("cannot start a blob hasher: {e}")))?;
    let written = write_all(writer, &mut rx, &hash_tx, progress);
    // Dropping `hash_tx` ends the hasher.
    drop(hash_tx);
    let verifier = hasher
        .join()
        .map_err(|_| PullError::Internal("blob hashing thread failed".into()))?;
    let (writer, bytes) = written?;
    Ok(Written {
        writer,
        bytes,
        verifier,
    })
}

fn write_all(
    mut writer: Box<dyn BlobWriter>,
    rx: &mut mpsc::Receiver<Piece>,
    hash_tx: &std::sync::mpsc::SyncSender<Vec<Bytes>>,
    progress: &watch::Sender<Progress>,
) -> Result<(Box<dyn BlobWriter>, u64), PullError> {
    let mut bytes = 0u64;
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::Chunks(chunks, len) => {
                if hash_tx.send(chunks.clone()).is_err() {
                    break;
                }
                writer.write(&chunks)?;
                bytes += len;
                progress.send_replace(Progress {
                    written: bytes,
                    state: ProgressState::Filling,
                });
            }
            Piece::End => return Ok((writer, bytes)),
        }
    }
    Err(PullError::Internal("blob download was abandoned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[test]
    fn fills_are_written_while_the_blocking_pool_is_taken() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Slow clients' readers hold every blocking thread.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (taken_tx, taken) = oneshot::channel();
            let busy = tokio::task::spawn_blocking(move || {
                let _ = taken_tx.send(());
                let _ = held.recv_timeout(Duration::from_secs(30));
            });
            taken.await.unwrap();
            let data = Bytes::from_static(b"a blob somebody waits for");
            let store = berth_cache::MemoryStore::new(1 << 20);
            let store_writer = berth_cache::BlobStore::begin(&store, &Digest::of(&data), None)
                .await
                .unwrap();
            let (progress, mut seen) = watch::channel(Progress {
                written: 0,
                state: ProgressState::Filling,
            });
            let (tx, writer) = spawn(store_writer, Digest::of(&data), progress);
            tx.send(Piece::Chunks(vec![data.clone()], data.len() as u64))
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(5), seen.changed())
                .await
                .expect("the writer made no progress beside a full blocking pool")
                .unwrap();
            tx.send(Piece::End).await.unwrap();
            let written = tokio::time::timeout(Duration::from_secs(5), writer)
                .await
                .expect("the writer did not finish beside a full blocking pool")
                .unwrap()
                .unwrap();
            assert_eq!(written.bytes, data.len() as u64);
            let proof = written.verifier.finish().unwrap();
            written.writer.finish(proof).await.unwrap();
            release.send(()).unwrap();
            busy.await.unwrap();
        });
    }
}
