//! Blobs: served from the store when committed, otherwise from the one
//! in-flight fill for their digest.

use crate::cache::{ByteStream, stream_file};
use crate::oci::{Digest, RepoName};
use crate::pull::fill::{FillHandle, FillJob};
use crate::pull::{Outcome, PullError, PullService};
use crate::upstream::{Registry, UpstreamError};
use std::sync::Arc;

/// A blob ready to stream: committed in the store, or still filling.
#[derive(Debug)]
pub struct BlobSource {
    /// Total size, when known (always for committed blobs).
    pub size: Option<u64>,
    /// How it was answered.
    pub outcome: Outcome,
    digest: Digest,
    filling: Option<FillHandle>,
}

impl PullService {
    /// Open a blob for reading, starting or joining its download on a miss.
    pub async fn open_blob(
        &self,
        registry: &Arc<Registry>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobSource, PullError> {
        if let Some(size) = self.blobs.stat(digest).await? {
            self.metrics.cache("blob", Outcome::Hit.as_str());
            return Ok(BlobSource {
                size: Some(size),
                outcome: Outcome::Hit,
                digest: digest.clone(),
                filling: None,
            });
        }
        let job = FillJob {
            blobs: Arc::clone(&self.blobs),
            registry: Arc::clone(registry),
            repo: repo.clone(),
            digest: digest.clone(),
            metrics: Arc::clone(&self.metrics),
        };
        let (handle, joined) = self.fills.join_or_start(job).await?;
        let outcome = if joined {
            Outcome::Coalesced
        } else {
            Outcome::Miss
        };
        self.metrics.cache("blob", outcome.as_str());
        Ok(BlobSource {
            size: handle.size,
            outcome,
            digest: digest.clone(),
            filling: Some(handle),
        })
    }

    /// Size of a blob without downloading it: from the store, an in-flight
    /// fill, or an upstream HEAD.
    pub async fn blob_size(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(u64, Outcome), PullError> {
        if let Some(size) = self.blobs.stat(digest).await? {
            return Ok((size, Outcome::Hit));
        }
        match registry.head_blob(repo, digest).await? {
            Some(size) => Ok((size, Outcome::Miss)),
            None => Err(UpstreamError::Invalid {
                upstream: registry.name().to_owned(),
                detail: "blob HEAD without Content-Length".to_owned(),
            }
            .into()),
        }
    }

    /// Stream bytes `start..end` of an opened blob (`end = None`: to the
    /// end of a blob whose size is not known yet).
    pub async fn stream_blob(
        &self,
        source: BlobSource,
        start: u64,
        end: Option<u64>,
    ) -> Result<ByteStream, PullError> {
        match source.filling {
            Some(fill) => Ok(stream_file(fill.file, start, end, Some(fill.progress))),
            None => {
                let end = end.or(source.size).unwrap_or(0);
                self.blobs
                    .read(&source.digest, start, end)
                    .await?
                    .ok_or_else(|| {
                        PullError::Storage(format!(
                            "blob {} vanished from the cache",
                            source.digest
                        ))
                    })
            }
        }
    }
}
