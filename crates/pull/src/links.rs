//! The link guard: content is served under a repository only when berth
//! knows that repository references it. The store is global by digest, so
//! without this a digest learned from a private repository could be
//! fetched under any public name.
//!
//! A repository is linked to a digest when upstream served a manifest of
//! it (the manifest and everything it lists), when upstream answered for
//! the digest under that name (a fetch this request started), or when
//! upstream confirmed it for a request that found the content cached or
//! joined another repository's download: a HEAD under the requested name,
//! one per repository and digest at a time.

use crate::origin::Origin;
use crate::{PullError, PullService};
use berth_cache::RepoKey;
use berth_oci::{Digest, MANIFEST_MEDIA_TYPES, Reference, RepoName, Resource, references};

fn repo_key(origin: &Origin, repo: &RepoName) -> RepoKey {
    RepoKey {
        upstream: origin.name().to_owned(),
        repo: repo.to_string(),
    }
}

impl PullService {
    /// Whether `repo` is known to reference `digest`.
    pub(super) async fn linked(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, PullError> {
        Ok(self.index.linked(&repo_key(origin, repo), digest).await?)
    }

    /// Record that `repo` references `digests`. A failure to record is
    /// logged, not fatal: the link is then confirmed again next time.
    pub(super) async fn link(&self, origin: &Origin, repo: &RepoName, digests: &[Digest]) {
        if let Err(e) = self.index.link(&repo_key(origin, repo), digests).await {
            tracing::warn!(repository = %repo, error = %e, "could not record repository links");
        }
    }

    /// Link `repo` to a manifest served under it and to all it lists
    /// (once per process: a warm request parses nothing).
    pub(super) async fn link_manifest(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
        bytes: &[u8],
    ) {
        let key = Digest::of(format!("{}\n{repo}\n{digest}", origin.name()).as_bytes());
        if self.expanded.contains_key(&key) {
            return;
        }
        let named = references(bytes);
        let digests: Vec<Digest> = std::iter::once(*digest)
            .chain(named.blobs.iter().map(|b| b.digest))
            .chain(named.manifests.iter().map(|m| m.digest))
            .collect();
        if self
            .index
            .link(&repo_key(origin, repo), &digests)
            .await
            .is_ok()
        {
            self.expanded.insert(key, ());
        } else {
            tracing::warn!(repository = %repo, "could not record repository links");
        }
    }

    /// Ask upstream whether `repo` has `digest` (a HEAD under that name),
    /// and link them when it does. "Not found" and refusals are upstream's
    /// answers, passed on; so is an outage: what berth cannot confirm it
    /// does not serve.
    pub(super) async fn confirm_link(
        &self,
        origin: &Origin,
        repo: &RepoName,
        digest: &Digest,
        kind: Resource,
    ) -> Result<(), PullError> {
        let key = repo_key(origin, repo);
        let flight = self
            .flights
            .lock(&format!("link\n{}\n{digest}", key.id()))
            .await;
        if flight.waited && self.index.linked(&key, digest).await? {
            return Ok(());
        }
        match kind {
            Resource::Manifest => {
                let accept: Vec<String> = MANIFEST_MEDIA_TYPES
                    .iter()
                    .map(|m| (*m).to_owned())
                    .collect();
                let reference = Reference::Digest(*digest);
                origin
                    .upstream
                    .head_manifest(repo, &reference, &accept, origin.client_authorization())
                    .await?;
            }
            _ => {
                origin
                    .upstream
                    .head_blob(repo, digest, origin.client_authorization())
                    .await?;
            }
        }
        self.metrics.cache(kind.as_str(), "link_confirmed");
        self.link(origin, repo, &[*digest]).await;
        Ok(())
    }
}
