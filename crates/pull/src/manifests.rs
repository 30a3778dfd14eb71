//! Manifests: by digest they are immutable and verified before caching.
//! What both paths share is here too: the hot and stored manifests, the
//! upstream fetch with its remembered "not found", and stale-if-error. By
//! tag, see `tags.rs`.

use crate::grants::Probe;
use crate::origin::Origin;
use crate::{Outcome, PullError, PullService};
use berth_cache::{HotManifest, Lookup, TagKey};
use berth_oci::{
    Digest, MANIFEST_MEDIA_TYPES, Reference, RepoName, Resource, accept_key, known_accept_lines,
    manifest_media_type,
};
use berth_upstream::{ManifestFetch, UpstreamError};
use bytes::Bytes;

/// A manifest request after routing.
#[derive(Debug)]
pub struct ManifestRequest<'a> {
    /// The upstream it goes to, with its cache policy.
    pub origin: &'a Origin,
    /// Repository name as upstream knows it.
    pub repo: &'a RepoName,
    /// Tag or digest.
    pub reference: &'a Reference,
    /// Every `Accept` line the client sent.
    pub accept: &'a [String],
}

/// A manifest ready to serve.
#[derive(Debug, Clone)]
pub struct ManifestAnswer {
    /// Exact bytes as upstream sent them.
    pub bytes: Bytes,
    /// Media type, as the manifest's own bytes give it.
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// How it was answered.
    pub outcome: Outcome,
}

impl PullService {
    /// Answer a manifest request from the cache or upstream.
    pub async fn manifest(&self, req: &ManifestRequest<'_>) -> Result<ManifestAnswer, PullError> {
        let answer = self.answer_manifest(req).await;
        match &answer {
            Ok(a) => self.metrics.cache("manifest", a.outcome.as_str()),
            Err(_) => self.metrics.cache("manifest", "failed"),
        }
        answer
    }

    async fn answer_manifest(
        &self,
        req: &ManifestRequest<'_>,
    ) -> Result<ManifestAnswer, PullError> {
        // Only known manifest types take part: they go upstream and key the
        // tag answer; whatever else a client adds is ignored. A client that
        // names none (no Accept, or just */*) gets what modern clients ask
        // for, and shares their tag answers.
        let mut accept = known_accept_lines(req.accept.iter().map(String::as_str));
        if accept.is_empty() {
            accept = MANIFEST_MEDIA_TYPES
                .iter()
                .map(|m| (*m).to_owned())
                .collect();
        }
        let req = &ManifestRequest {
            accept: &accept,
            ..*req
        };
        self.check_grant(req.origin, req.repo, Probe::Manifest(req.reference))
            .await?;
        if let Reference::Digest(d) = req.reference {
            if !self.linked(req.origin, req.repo, d).await?
                && self.private_elsewhere(req.origin, d).await?
            {
                // Another upstream fetched it with credentials: this one
                // must deliver the bytes itself (see `provenance.rs`).
                return self.manifest_from_upstream_only(req, d).await;
            }
            self.mark_provenance(req.origin, d).await;
        }
        let answer = match req.reference {
            Reference::Digest(d) => self.manifest_by_digest(req, d).await,
            Reference::Tag(_) => self.manifest_by_tag(req).await,
        }?;
        // A tag's answers are kept per repository; a digest found cached
        // (or fetched by another request) is served under this name only
        // through a link (see `links.rs`).
        if let Reference::Digest(d) = req.reference
            && answer.outcome != Outcome::Miss
            && !self.linked(req.origin, req.repo, d).await?
        {
            self.confirm_link(req.origin, req.repo, d, Resource::Manifest)
                .await?;
        }
        self.link_manifest(req.origin, req.repo, &answer.digest, &answer.bytes)
            .await;
        Ok(answer)
    }

    pub(super) async fn cached_manifest(
        &self,
        digest: &Digest,
        outcome: Outcome,
    ) -> Result<Option<ManifestAnswer>, PullError> {
        let answer = |m: HotManifest| ManifestAnswer {
            bytes: m.bytes,
            media_type: m.media_type.to_string(),
            digest: *digest,
            outcome,
        };
        if let Some(hot) = self.hot.get(digest) {
            self.blobs.record_use(digest);
            return Ok(Some(answer(hot)));
        }
        let Some(stored) = self.index.manifest_type(digest).await? else {
            return Ok(None);
        };
        let read = match self.blobs.lookup(digest).await {
            Ok(Lookup::Hit(hit)) => hit.bytes().await,
            // Another replica stored it (its type is in the shared index).
            Ok(Lookup::Miss) => return Ok(self.manifest_from_peer(digest, &stored, outcome).await),
            Err(e) => Err(e),
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                // Fetched again from upstream, verified by its digest.
                self.disk.read_failed(&self.metrics, "manifest", digest, &e);
                return Ok(None);
            }
        };
        // The bytes decide; the stored type only where they cannot tell (a
        // record that contradicts them was written by an older version).
        let Ok(media_type) = manifest_media_type(&bytes, Some(&stored))
            .or_else(|_| manifest_media_type(&bytes, None))
        else {
            return Ok(None);
        };
        let hot = HotManifest {
            bytes,
            media_type: media_type.into(),
        };
        self.hot.insert(*digest, hot.clone());
        Ok(Some(answer(hot)))
    }

    async fn manifest_by_digest(
        &self,
        req: &ManifestRequest<'_>,
        digest: &Digest,
    ) -> Result<ManifestAnswer, PullError> {
        if let Some(hit) = self.cached_manifest(digest, Outcome::Hit).await? {
            return Ok(hit);
        }
        let id = digest.to_string();
        let boarded = self.board(req.origin, &id).await?;
        if boarded.flight.waited
            && let Some(hit) = self.cached_manifest(digest, Outcome::Coalesced).await?
        {
            return Ok(hit);
        }
        if let Some(e) = boarded.failed_before {
            return Err(e);
        }
        let result = self.fetch_manifest_by_digest(req, digest).await;
        self.landed(&id, &result);
        result
    }

    /// The manifest `digest` from `req`'s upstream, its bytes checked
    /// against the digest.
    async fn fetch_manifest_exactly(
        &self,
        req: &ManifestRequest<'_>,
        digest: &Digest,
    ) -> Result<ManifestFetch, PullError> {
        let fetch = self.fetch_manifest(req).await?;
        let actual = Digest::of(&fetch.bytes);
        if &actual != digest {
            return Err(PullError::DigestMismatch {
                upstream: req.origin.name().to_owned(),
                expected: *digest,
                actual,
            });
        }
        Ok(fetch)
    }

    /// The manifest `digest` as `req`'s upstream sends it, checked but
    /// neither cached nor linked.
    async fn manifest_from_upstream_only(
        &self,
        req: &ManifestRequest<'_>,
        digest: &Digest,
    ) -> Result<ManifestAnswer, PullError> {
        let fetch = self.fetch_manifest_exactly(req, digest).await?;
        let media_type =
            manifest_media_type(&fetch.bytes, Some(&fetch.media_type)).map_err(|e| {
                PullError::Unusable {
                    upstream: req.origin.name().to_owned(),
                    detail: format!("manifest {digest}: {e}"),
                }
            })?;
        Ok(ManifestAnswer {
            bytes: fetch.bytes,
            media_type: media_type.to_owned(),
            digest: *digest,
            outcome: Outcome::Direct,
        })
    }

    /// Fetch, check and store the manifest `digest`, holding its flight.
    async fn fetch_manifest_by_digest(
        &self,
        req: &ManifestRequest<'_>,
        digest: &Digest,
    ) -> Result<ManifestAnswer, PullError> {
        let fetch = self.fetch_manifest_exactly(req, digest).await?;
        let media_type = self.store_manifest(req, &fetch, digest).await?;
        self.prefetch(req.origin, req.repo, &fetch.bytes);
        Ok(ManifestAnswer {
            bytes: fetch.bytes,
            media_type,
            digest: *digest,
            outcome: Outcome::Miss,
        })
    }

    /// Cache a fetched manifest and return the media type it is served
    /// with. The type comes from the bytes; where they cannot tell, the
    /// first type recorded for the digest stays, so no upstream can change
    /// what another upstream's clients get. A manifest whose
    /// `Content-Type` contradicts its bytes is refused and not cached.
    pub(super) async fn store_manifest(
        &self,
        req: &ManifestRequest<'_>,
        fetch: &ManifestFetch,
        digest: &Digest,
    ) -> Result<String, PullError> {
        let fetched = manifest_media_type(&fetch.bytes, Some(&fetch.media_type)).map_err(|e| {
            PullError::Unusable {
                upstream: req.origin.name().to_owned(),
                detail: format!("manifest {digest}: {e}"),
            }
        })?;
        let recorded = self
            .index
            .manifest_type(digest)
            .await?
            .and_then(|stored| manifest_media_type(&fetch.bytes, Some(&stored)).ok());
        self.mark_provenance(req.origin, digest).await;
        match self.blobs.put_small(digest, fetch.bytes.clone()).await {
            Ok(()) => {
                if let Some(peers) = &self.peers {
                    peers.hold(digest).await;
                }
            }
            Err(e) => {
                // Served all the same: it was verified against its digest.
                tracing::error!(%digest, error = %e, "manifest could not be stored; served uncached");
                self.metrics.cache_write_failures.inc();
            }
        }
        let media_type = match recorded {
            Some(t) => t,
            None => {
                self.index.put_manifest_type(digest, fetched).await?;
                fetched
            }
        };
        let hot = HotManifest {
            bytes: fetch.bytes.clone(),
            media_type: media_type.into(),
        };
        self.hot.insert(*digest, hot);
        Ok(media_type.to_owned())
    }

    /// Stale-if-error: on an outage, or on "not found" when the upstream
    /// opted in (an image removed upstream keeps being served).
    pub(super) fn may_serve_stale(&self, req: &ManifestRequest<'_>, e: &UpstreamError) -> bool {
        e.is_outage()
            || (matches!(e, UpstreamError::NotFound { .. }) && req.origin.policy.stale_on_not_found)
    }

    /// GET a manifest upstream, unless upstream said "not found" for it
    /// within `not_found_ttl`.
    pub(super) async fn fetch_manifest(
        &self,
        req: &ManifestRequest<'_>,
    ) -> Result<ManifestFetch, PullError> {
        // Upstream may say "not found" to one Accept set only (an index
        // for a client that accepts no index).
        let key = format!("{}\nmanifest {}", tag_key(req).id(), client_accept(req));
        let not_found = || UpstreamError::NotFound {
            upstream: req.origin.name().to_owned(),
            resource: Resource::Manifest,
            code: None,
        };
        if self.misses.contains(&key) {
            self.metrics.cache("manifest", "negative");
            return Err(not_found().into());
        }
        match req
            .origin
            .upstream
            .get_manifest(
                req.repo,
                req.reference,
                req.accept,
                req.origin.client_authorization(),
            )
            .await
        {
            Err(e @ UpstreamError::NotFound { .. }) => {
                self.misses.remember(key, req.origin.policy.not_found_ttl);
                Err(e.into())
            }
            other => Ok(other?),
        }
    }

    pub(super) fn stale(&self, answer: ManifestAnswer, cause: &UpstreamError) -> ManifestAnswer {
        tracing::warn!(digest = %answer.digest, error = %cause, "upstream failed; serving cached manifest (stale-if-error)");
        ManifestAnswer {
            outcome: Outcome::Stale,
            ..answer
        }
    }
}

/// The key of a tag's cached answers (for a digest, the same shape).
pub(super) fn tag_key(req: &ManifestRequest<'_>) -> TagKey {
    TagKey {
        upstream: req.origin.name().to_owned(),
        repo: req.repo.to_string(),
        tag: req.reference.to_string(),
    }
}

/// The client's `Accept` set as one key.
pub(super) fn client_accept(req: &ManifestRequest<'_>) -> String {
    accept_key(req.accept.iter().map(String::as_str))
}
