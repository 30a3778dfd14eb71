//! Blobs: served from the store when committed, otherwise from the one
//! in-flight fill for their digest, or straight from upstream when the
//! cache cannot take them. Upstream's "not found" is remembered for
//! `not_found_ttl`, like a manifest's.

use crate::direct::verified_stream;
use crate::fill::{FillHandle, FillJob, Joined};
use crate::{HOT_BLOB_MAX, Outcome, PullError, PullService};
use berth_cache::{BlobBytes, CacheError, FileSpan};
use berth_oci::{Digest, RepoName};
use berth_upstream::{BlobDownload, Registry, UpstreamError};
use bytes::Bytes;
use std::sync::Arc;

/// A blob ready to stream: committed in the store, or still filling.
#[derive(Debug)]
pub struct BlobSource {
    /// Total size, when known (always for committed blobs).
    pub size: Option<u64>,
    /// How it was answered.
    pub outcome: Outcome,
    digest: Digest,
    origin: Origin,
    /// Largest size accepted from upstream.
    max: u64,
}

/// Where an opened blob's bytes come from.
#[derive(Debug)]
enum Origin {
    Memory(Bytes),
    Store,
    Fill(FillHandle),
    Upstream(BlobDownload),
}

impl BlobSource {
    /// Whether byte ranges can be served (not for a direct upstream stream).
    pub fn seekable(&self) -> bool {
        !matches!(self.origin, Origin::Upstream(_))
    }
}

impl PullService {
    /// Open a blob for reading, starting or joining its download on a miss.
    pub async fn open_blob(
        &self,
        registry: &Arc<Registry>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobSource, PullError> {
        if let Some(bytes) = self.hot_blobs.get(digest) {
            return Ok(self.hit(digest, bytes.len() as u64, Origin::Memory(bytes)));
        }
        if let Some(size) = self.blobs.stat(digest).await? {
            if size <= HOT_BLOB_MAX
                && let Some(bytes) = self.blobs.read_small(digest).await?
            {
                self.hot_blobs.insert(digest.clone(), bytes.clone());
                return Ok(self.hit(digest, size, Origin::Memory(bytes)));
            }
            return Ok(self.hit(digest, size, Origin::Store));
        }
        self.check_not_missing(registry, repo, digest)?;
        if self.disk.bypass() {
            return self.direct(registry, repo, digest, None).await;
        }
        let job = FillJob {
            blobs: Arc::clone(&self.blobs),
            registry: Arc::clone(registry),
            repo: repo.clone(),
            digest: digest.clone(),
            metrics: Arc::clone(&self.metrics),
            disk: Arc::clone(&self.disk),
            misses: self.misses.clone(),
            unattended: self.unattended_permits(registry),
        };
        let joined = self.fills.join_or_start(job).await;
        let (handle, coalesced) = match self.remember_missing(registry, repo, digest, joined)? {
            Joined::Fill { handle, coalesced } => (handle, coalesced),
            Joined::Direct(download) => return self.direct(registry, repo, digest, download).await,
        };
        let outcome = if coalesced {
            Outcome::Coalesced
        } else {
            Outcome::Miss
        };
        self.metrics.cache("blob", outcome.as_str());
        Ok(BlobSource {
            size: handle.size,
            outcome,
            digest: digest.clone(),
            origin: Origin::Fill(handle),
            max: registry.config().fills.max_blob_size,
        })
    }

    /// A blob answered from the cache.
    fn hit(&self, digest: &Digest, size: u64, origin: Origin) -> BlobSource {
        self.metrics.cache("blob", Outcome::Hit.as_str());
        BlobSource {
            size: Some(size),
            outcome: Outcome::Hit,
            digest: digest.clone(),
            origin,
            max: size,
        }
    }

    /// A blob streamed from upstream without caching.
    async fn direct(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
        download: Option<BlobDownload>,
    ) -> Result<BlobSource, PullError> {
        let download = match download {
            Some(d) => d,
            None => {
                let fetched = registry.get_blob(repo, digest, 0).await;
                self.remember_missing(registry, repo, digest, fetched)?
            }
        };
        let max = registry.config().fills.max_blob_size;
        if let Some(size) = download.size.filter(|s| *s > max) {
            return Err(UpstreamError::Invalid {
                upstream: registry.name().to_owned(),
                detail: format!("blob {digest} has {size} bytes, more than max_blob_size ({max})"),
            }
            .into());
        }
        self.metrics.cache("blob", Outcome::Direct.as_str());
        Ok(BlobSource {
            size: download.size,
            outcome: Outcome::Direct,
            digest: digest.clone(),
            origin: Origin::Upstream(download),
            max,
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
        if let Some(bytes) = self.hot_blobs.get(digest) {
            return Ok((bytes.len() as u64, Outcome::Hit));
        }
        if let Some(size) = self.blobs.stat(digest).await? {
            return Ok((size, Outcome::Hit));
        }
        self.check_not_missing(registry, repo, digest)?;
        let head = registry.head_blob(repo, digest).await;
        match self.remember_missing(registry, repo, digest, head)? {
            Some(size) => Ok((size, Outcome::Miss)),
            None => Err(UpstreamError::Invalid {
                upstream: registry.name().to_owned(),
                detail: "blob HEAD without Content-Length".to_owned(),
            }
            .into()),
        }
    }

    /// Fail at once when upstream said "not found" for this blob within
    /// `not_found_ttl`.
    fn check_not_missing(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), PullError> {
        if self.misses.contains(&miss_key(registry, repo, digest)) {
            self.metrics.cache("blob", "negative");
            return Err(UpstreamError::NotFound {
                upstream: registry.name().to_owned(),
                what: "blob",
                code: None,
            }
            .into());
        }
        Ok(())
    }

    /// Pass `result` on, remembering an upstream "not found" for the blob.
    fn remember_missing<T, E: Into<PullError>>(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
        result: Result<T, E>,
    ) -> Result<T, PullError> {
        let result = result.map_err(Into::into);
        if let Err(PullError::Upstream(UpstreamError::NotFound { .. })) = &result {
            self.misses.remember(
                miss_key(registry, repo, digest),
                registry.config().resilience.not_found_ttl,
            );
        }
        result
    }

    /// Stream bytes `start..end` of an opened blob (`end = None`: to the
    /// end of a blob whose size is not known yet).
    pub async fn stream_blob(
        &self,
        source: BlobSource,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobBytes, PullError> {
        match source.origin {
            Origin::Memory(bytes) => {
                let len = bytes.len() as u64;
                let end = end.unwrap_or(len).min(len);
                let start = start.min(end);
                Ok(BlobBytes::Memory(bytes.slice(start as usize..end as usize)))
            }
            Origin::Fill(fill) => Ok(BlobBytes::File(FileSpan::filling(
                fill.file,
                start,
                end,
                fill.progress,
            ))),
            // Served whole: the handler does not offer ranges without a size.
            Origin::Upstream(download) => Ok(BlobBytes::Stream(verified_stream(
                download,
                source.digest,
                source.max,
            ))),
            Origin::Store => {
                let end = end.or(source.size).unwrap_or(0);
                self.blobs
                    .read(&source.digest, start, end)
                    .await?
                    .ok_or_else(|| CacheError::Vanished(source.digest.clone()).into())
            }
        }
    }
}

/// The remembered-miss key of a blob: upstream, repository and digest (three
/// lines, where a manifest's key has four).
pub(super) fn miss_key(registry: &Registry, repo: &RepoName, digest: &Digest) -> String {
    format!("{}\n{repo}\nblob {digest}", registry.name())
}
