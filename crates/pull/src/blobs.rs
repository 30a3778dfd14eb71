//! Blobs: served from the store when committed, otherwise from the one
//! in-flight fill for their digest, or straight from upstream when the
//! cache cannot take them. Upstream's "not found" is remembered for
//! `not_found_ttl`, like a manifest's.

use crate::direct::verified_stream;
use crate::fill::{FillHandle, FillJob, Joined};
use crate::grants::Probe;
use crate::misses::blob_key;
use crate::origin::Origin;
use crate::source::Download;
use crate::{Outcome, PullError, PullService};
use berth_cache::{BlobBytes, Hit, Lookup, SMALL_BLOB, Span};
use berth_oci::{Digest, RepoName, Resource};
use berth_upstream::{UpstreamError, Urgency};
use bytes::Bytes;
use std::sync::Arc;

/// A blob ready to stream: stored, or still filling.
#[derive(Debug)]
pub struct OpenedBlob {
    /// Total size, when known (always for stored blobs).
    pub size: Option<u64>,
    /// How it was answered.
    pub outcome: Outcome,
    digest: Digest,
    body: Body,
    /// Largest size accepted from upstream.
    max: u64,
}

/// Where an opened blob's bytes come from.
#[derive(Debug)]
enum Body {
    Memory(Bytes),
    Stored(Hit),
    Fill(FillHandle),
    Upstream(Download),
}

impl OpenedBlob {
    /// Whether byte ranges can be served (not for a direct upstream stream).
    pub fn seekable(&self) -> bool {
        !matches!(self.body, Body::Upstream(_))
    }

    /// A short-lived URL where the client may fetch this stored blob
    /// itself (its object presigned, with `redirect` on), rather than
    /// through berth. Asked only after every guard passed.
    pub fn redirect_url(&self) -> impl Future<Output = Option<String>> + Send + 'static {
        // The hit alone is taken along: the body need not be `Sync`.
        let hit = match &self.body {
            Body::Stored(hit) => Some(hit.clone()),
            _ => None,
        };
        async move {
            match hit {
                Some(hit) => hit.redirect_url().await,
                None => None,
            }
        }
    }
}

impl PullService {
    /// A fill of `digest` from `origin` that a client waits for.
    pub(super) fn fill_job(&self, origin: &Origin, repo: &RepoName, digest: &Digest) -> FillJob {
        FillJob {
            blobs: Arc::clone(&self.blobs),
            source: origin.source(),
            policy: Arc::clone(&origin.policy),
            flights: Arc::clone(&self.flights),
            peers: self.peers.clone(),
            repo: repo.clone(),
            digest: *digest,
            metrics: Arc::clone(&self.metrics),
            disk: Arc::clone(&self.disk),
            misses: self.misses.clone(),
            unattended: Arc::clone(&origin.unattended),
            urgency: Urgency::now(),
            eager: None,
        }
    }

    /// Open a blob for reading, starting or joining its download on a miss.
    /// It is served under `repo` only through a link (see `links.rs`):
    /// a fetch this request started links them; content found cached, or
    /// a download another repository started, is confirmed upstream first.
    pub async fn open_blob(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<OpenedBlob, PullError> {
        let opened = self.open_guarded(origin, repo, digest).await;
        if opened.is_err() {
            self.metrics.cache("blob", "failed");
        }
        opened
    }

    async fn open_guarded(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<OpenedBlob, PullError> {
        self.check_grant(origin, repo, Probe::Blob(digest)).await?;
        let linked = self.linked(origin, repo, digest).await?;
        if !linked && self.private_elsewhere(origin, digest).await? {
            // Another upstream fetched it with credentials: this one must
            // deliver the bytes itself (see `provenance.rs`).
            return self.direct(origin, repo, digest, None).await;
        }
        self.mark_provenance(origin, digest).await;
        let source = self.open_unguarded(origin, repo, digest).await?;
        if !linked {
            // Fetched from upstream under this name: that is the proof.
            if matches!(source.outcome, Outcome::Miss | Outcome::Direct) {
                self.link(origin, repo, &[*digest]).await;
            } else {
                self.confirm_link(origin, repo, digest, Resource::Blob)
                    .await?;
            }
        }
        Ok(source)
    }

    async fn open_unguarded(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<OpenedBlob, PullError> {
        let ahead = self.ahead.take(digest);
        if let Some(bytes) = self.hot_blobs.get(digest) {
            self.blobs.record_use(digest);
            return Ok(self.hit(digest, bytes.len() as u64, Body::Memory(bytes), ahead));
        }
        match self.blobs.lookup(digest).await {
            Ok(Lookup::Hit(hit)) => return self.stored(digest, hit, ahead).await,
            Ok(Lookup::Miss) => {}
            // The fill spools it and tries to store it; its readers get
            // verified bytes whether or not the store takes them.
            Err(e) => self.disk.read_failed(&self.metrics, "blob", digest, &e),
        }
        self.check_not_missing(origin, repo, digest)?;
        if self.disk.bypass() {
            return self.direct(origin, repo, digest, None).await;
        }
        let job = self.fill_job(origin, repo, digest);
        let joined = self.fills.join_or_start(job).await;
        let (handle, coalesced) = match self.remember_missing(origin, repo, digest, joined)? {
            Joined::Fill { handle, coalesced } => (handle, coalesced),
            Joined::Direct(download) => return self.direct(origin, repo, digest, download).await,
            Joined::Stored => {
                return match self.blobs.lookup(digest).await? {
                    Lookup::Hit(hit) => self.stored(digest, hit, ahead).await,
                    Lookup::Miss => Err(PullError::Internal(format!(
                        "blob {digest} was stored, then gone before it was opened"
                    ))),
                };
            }
        };
        let outcome = if coalesced {
            Outcome::Coalesced
        } else {
            Outcome::Miss
        };
        self.metrics.cache("blob", outcome.as_str());
        Ok(OpenedBlob {
            size: handle.size,
            outcome,
            digest: *digest,
            body: Body::Fill(handle),
            max: origin.policy.fills.max_blob_size,
        })
    }

    /// A blob for another replica of the cluster: stored here, or being
    /// downloaded here; `None` when neither (this replica never goes
    /// upstream for a peer). The asking replica ran the client's guards.
    pub async fn open_for_peer(&self, digest: &Digest) -> Result<Option<OpenedBlob>, PullError> {
        let opened = |size, body| OpenedBlob {
            size,
            outcome: Outcome::Hit,
            digest: *digest,
            body,
            max: size.unwrap_or(u64::MAX),
        };
        if let Some(bytes) = self.hot_blobs.get(digest) {
            return Ok(Some(opened(Some(bytes.len() as u64), Body::Memory(bytes))));
        }
        if let Ok(Lookup::Hit(hit)) = self.blobs.lookup(digest).await {
            self.blobs.record_use(digest);
            return Ok(Some(opened(Some(hit.size()), Body::Stored(hit))));
        }
        Ok(self
            .fills
            .join_running(digest)
            .await
            .map(|fill| opened(fill.size, Body::Fill(fill))))
    }

    /// A stored blob: a small one is read into the hot set and served from
    /// memory from then on. `ahead`: fetched ahead, asked for the first time.
    async fn stored(
        &self,
        digest: &Digest,
        hit: Hit,
        ahead: bool,
    ) -> Result<OpenedBlob, PullError> {
        if hit.size() > SMALL_BLOB {
            return Ok(self.hit(digest, hit.size(), Body::Stored(hit), ahead));
        }
        let bytes = hit.bytes().await?;
        self.hot_blobs.insert(*digest, bytes.clone());
        Ok(self.hit(digest, bytes.len() as u64, Body::Memory(bytes), ahead))
    }

    /// A blob of `size` bytes answered from the cache; `ahead`: one berth
    /// fetched ahead, asked for the first time.
    fn hit(&self, digest: &Digest, size: u64, body: Body, ahead: bool) -> OpenedBlob {
        let outcome = if ahead { Outcome::Ahead } else { Outcome::Hit };
        self.metrics.cache("blob", outcome.as_str());
        OpenedBlob {
            size: Some(size),
            outcome,
            digest: *digest,
            body,
            max: size,
        }
    }

    /// A blob streamed from upstream without caching.
    async fn direct(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
        download: Option<Download>,
    ) -> Result<OpenedBlob, PullError> {
        let download = match download {
            Some(d) => d,
            None => {
                let fetched = origin
                    .source()
                    .fetch(repo, digest, 0, &Urgency::now())
                    .await;
                self.remember_missing(origin, repo, digest, fetched)?
            }
        };
        let max = origin.policy.fills.max_blob_size;
        if let Some(size) = download.size.filter(|s| *s > max) {
            return Err(PullError::Unusable {
                upstream: origin.name().to_owned(),
                detail: format!("blob {digest} has {size} bytes, more than max_blob_size ({max})"),
            });
        }
        self.metrics.cache("blob", Outcome::Direct.as_str());
        Ok(OpenedBlob {
            size: download.size,
            outcome: Outcome::Direct,
            digest: *digest,
            body: Body::Upstream(download),
            max,
        })
    }

    /// Size of a blob without downloading it: from the store, an in-flight
    /// fill, or an upstream HEAD. Guarded by links like `open_blob`.
    pub async fn blob_size(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(u64, Outcome), PullError> {
        self.check_grant(origin, repo, Probe::Blob(digest)).await?;
        let cached = match self.hot_blobs.get(digest) {
            Some(bytes) => {
                self.blobs.record_use(digest);
                Some(bytes.len() as u64)
            }
            None => self.blobs.size(digest).await.unwrap_or_else(|e| {
                self.disk
                    .read_failed(&self.metrics, "the size of blob", digest, &e);
                None
            }),
        };
        if let Some(size) = cached {
            if !self.linked(origin, repo, digest).await? {
                self.confirm_link(origin, repo, digest, Resource::Blob)
                    .await?;
            }
            return Ok((size, Outcome::Hit));
        }
        self.check_not_missing(origin, repo, digest)?;
        let head = origin
            .upstream
            .head_blob(repo, digest, origin.client_authorization())
            .await;
        let size = self.remember_missing(origin, repo, digest, head)?;
        self.link(origin, repo, &[*digest]).await;
        match size {
            Some(size) => Ok((size, Outcome::Miss)),
            None => Err(PullError::Unusable {
                upstream: origin.name().to_owned(),
                detail: "blob HEAD without Content-Length".to_owned(),
            }),
        }
    }

    /// Fail at once when upstream said "not found" for this blob within
    /// `not_found_ttl`.
    fn check_not_missing(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), PullError> {
        if self.misses.contains(&blob_key(origin.name(), repo, digest)) {
            self.metrics.cache("blob", "negative");
            return Err(UpstreamError::NotFound {
                upstream: origin.name().to_owned(),
                resource: Resource::Blob,
                code: None,
            }
            .into());
        }
        Ok(())
    }

    /// Pass `result` on, remembering an upstream "not found" for the blob.
    fn remember_missing<T, E: Into<PullError>>(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
        result: Result<T, E>,
    ) -> Result<T, PullError> {
        let result = result.map_err(Into::into);
        if let Err(PullError::Upstream(UpstreamError::NotFound { .. })) = &result {
            self.misses.remember(
                blob_key(origin.name(), repo, digest),
                origin.policy.not_found_ttl,
            );
        }
        result
    }

    /// Stream bytes `start..end` of an opened blob (`end = None`: to the
    /// end of a blob whose size is not known yet).
    pub async fn stream_blob(
        &self,
        source: OpenedBlob,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobBytes, PullError> {
        match source.body {
            Body::Memory(bytes) => {
                let len = bytes.len() as u64;
                let end = end.unwrap_or(len).min(len);
                let start = start.min(end);
                Ok(BlobBytes::Memory(bytes.slice(start as usize..end as usize)))
            }
            Body::Stored(hit) => Ok(hit.read(start, end.unwrap_or(hit.size()))?),
            Body::Fill(fill) => Ok(BlobBytes::Span(Span::filling(
                fill.content,
                start,
                end,
                fill.progress,
            ))),
            // Served whole: the handler does not offer ranges without a size.
            Body::Upstream(download) => Ok(BlobBytes::Stream(verified_stream(
                download,
                source.digest,
                source.max,
            ))),
        }
    }
}
