//! Manifests by tag. Upstream's answer for a tag depends on the `Accept`
//! set it is asked with, so the tag keeps one answer per set (see
//! `berth_cache::TagRecord`), and each answer serves every client that
//! upstream would give it to (`berth_oci::answer_serves`): docker,
//! containerd, podman and skopeo share one fetch, and a client that
//! accepts a list never gets one platform's manifest of it.
//!
//! An answer is trusted for `tag_ttl`, then revalidated with a HEAD; a
//! confirmed list confirms every answer of the tag. When upstream fails,
//! the freshest answer that fits the client is served stale.

use crate::manifests::{ManifestAnswer, ManifestRequest, client_accept, tag_key};
use crate::{Outcome, PullError, PullService};
use berth_cache::{TagAnswer, TagKey, TagRecord};
use berth_oci::Digest;

impl PullService {
    /// Forget every cached answer of `tag` (a push moved it): the next
    /// request asks upstream.
    pub async fn forget_tag(
        &self,
        origin: &crate::Origin,
        repo: &berth_oci::RepoName,
        tag: &str,
    ) -> Result<(), PullError> {
        let key = TagKey {
            upstream: origin.name().to_owned(),
            repo: repo.to_string(),
            tag: tag.to_owned(),
        };
        Ok(self.index.put_tag(&key, TagRecord::default()).await?)
    }

    pub(super) async fn manifest_by_tag(
        &self,
        req: &ManifestRequest<'_>,
    ) -> Result<ManifestAnswer, PullError> {
        let key = tag_key(req);
        let client = client_accept(req);
        if let Some(record) = self.index.tag(&key).await?
            && let Some((answer, cached)) = self.fitting(&record, &client).await?
            && self.tag_fresh(req, &answer)
        {
            return Ok(cached);
        }
        // One upstream exchange per tag at a time, whatever the Accept
        // sets: the clients behind the first usually share its answer,
        // or its failure.
        let id = key.id();
        let boarded = self.board(req.origin, &id).await?;
        let result = self.tag_in_flight(req, &key, &client, &boarded).await;
        self.landed(&id, &result);
        result
    }

    /// Whether `answer` is within the tag TTL of its last confirmation.
    fn tag_fresh(&self, req: &ManifestRequest<'_>, answer: &TagAnswer) -> bool {
        let ttl_ms = req.origin.policy.tag_ttl.as_millis() as u64;
        self.clock.now_ms().saturating_sub(answer.checked_at_ms) < ttl_ms
    }

    /// The tag's answer, holding its flight lock.
    async fn tag_in_flight(
        &self,
        req: &ManifestRequest<'_>,
        key: &TagKey,
        client: &str,
        boarded: &crate::shared::Boarded,
    ) -> Result<ManifestAnswer, PullError> {
        let mut record = self.index.tag(key).await?.unwrap_or_default();
        let fitting = self.fitting(&record, client).await?;
        if let Some(e) = &boarded.failed_before {
            if let (Some((_, cached)), PullError::Upstream(u)) = (fitting, e)
                && self.may_serve_stale(req, u)
            {
                return Ok(self.stale(cached, u));
            }
            return Err(e.clone());
        }
        let Some((answer, cached)) = fitting else {
            return self.fetch_tag(req, key, record).await;
        };
        if self.tag_fresh(req, &answer) {
            let outcome = if boarded.flight.waited {
                Outcome::Coalesced
            } else {
                Outcome::Hit
            };
            return Ok(ManifestAnswer { outcome, ..cached });
        }
        match req
            .origin
            .upstream
            .head_manifest(
                req.repo,
                req.reference,
                req.accept,
                req.origin.client_authorization(),
            )
            .await
        {
            Ok(head) if head.digest.as_ref() == Some(&cached.digest) => {
                record.confirm(&answer.accept, self.clock.now_ms());
                self.index.put_tag(key, record).await?;
                return Ok(ManifestAnswer {
                    outcome: Outcome::Revalidated,
                    ..cached
                });
            }
            // The tag moved: this answer no longer holds.
            Ok(_) => record.forget(&answer.accept),
            Err(e) if self.may_serve_stale(req, &e) => return Ok(self.stale(cached, &e)),
            Err(e) => return Err(e.into()),
        }
        match self.fetch_tag(req, key, record).await {
            Err(PullError::Upstream(e)) if self.may_serve_stale(req, &e) => {
                Ok(self.stale(cached, &e))
            }
            other => other,
        }
    }

    /// The most recently confirmed answer of `record` that fits a client
    /// whose `Accept` set is `client`, with its manifest (an answer whose
    /// manifest is no longer cached does not count).
    async fn fitting(
        &self,
        record: &TagRecord,
        client: &str,
    ) -> Result<Option<(TagAnswer, ManifestAnswer)>, PullError> {
        for answer in record.serving(client) {
            let Ok(digest) = answer.digest.parse::<Digest>() else {
                continue;
            };
            if let Some(manifest) = self.cached_manifest(&digest, Outcome::Hit).await? {
                return Ok(Some((answer.clone(), manifest)));
            }
        }
        Ok(None)
    }

    /// GET the tag upstream, cache the manifest, and add the answer to
    /// the tag's `record`.
    async fn fetch_tag(
        &self,
        req: &ManifestRequest<'_>,
        key: &TagKey,
        mut record: TagRecord,
    ) -> Result<ManifestAnswer, PullError> {
        let fetch = self.fetch_manifest(req).await?;
        let digest = Digest::of(&fetch.bytes);
        if let Some(claimed) = &fetch.digest
            && claimed != &digest
        {
            return Err(PullError::DigestMismatch {
                upstream: req.origin.name().to_owned(),
                expected: *claimed,
                actual: digest,
            });
        }
        let media_type = self.store_manifest(req, &fetch, &digest).await?;
        self.prefetch(req.origin, req.repo, &fetch.bytes);
        record.add(TagAnswer {
            accept: client_accept(req),
            digest: digest.to_string(),
            media_type: media_type.clone(),
            size: fetch.bytes.len() as u64,
            checked_at_ms: self.clock.now_ms(),
        });
        self.index.put_tag(key, record).await?;
        Ok(ManifestAnswer {
            bytes: fetch.bytes,
            media_type,
            digest,
            outcome: Outcome::Miss,
        })
    }
}
