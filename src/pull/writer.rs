//! The blocking side of a fill: one thread that receives body chunks in
//! order, hashes them, appends them to the spool and publishes progress to
//! the readers tailing it.

use crate::cache::{Progress, ProgressState, Spool};
use crate::oci::{Digest, DigestVerifier};
use crate::pull::PullError;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What the download side sends the writer.
#[derive(Debug)]
pub(super) enum Piece {
    /// The next bytes of the blob.
    Chunk(Bytes),
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

/// Start the writer thread for a blob expected to hash to `digest`.
pub(super) fn spawn(
    spool: Spool,
    digest: Digest,
    progress: watch::Sender<Progress>,
) -> (mpsc::Sender<Piece>, JoinHandle<Result<Written, PullError>>) {
    let (tx, mut rx) = mpsc::channel::<Piece>(16);
    let handle = tokio::task::spawn_blocking(move || {
        let mut spool = spool;
        let mut verifier = DigestVerifier::new(digest);
        let mut bytes = 0u64;
        while let Some(piece) = rx.blocking_recv() {
            match piece {
                Piece::Chunk(chunk) => {
                    verifier.update(&chunk);
                    spool.write(&chunk)?;
                    bytes += chunk.len() as u64;
                    progress.send_replace(Progress {
                        written: bytes,
                        state: ProgressState::Filling,
                    });
                }
                Piece::End => {
                    return Ok(Written {
                        spool,
                        bytes,
                        verifier,
                    });
                }
            }
        }
        Err(PullError::Storage("blob download was abandoned".into()))
    });
    (tx, handle)
}
