//! Grants: in pass-through mode, which client credential upstream has
//! confirmed may pull which repository. Cached content of a repository is
//! served to a client only under such a grant; without one, berth first
//! asks upstream with the client's own `Authorization` (a HEAD of what was
//! asked for), and passes a refusal on. A client without credentials is one
//! more credential: "anonymous".
//!
//! A grant is trusted for a minute, then asked again. It is kept for an
//! hour, so that while upstream is down a client confirmed before keeps
//! being served from the cache; one never confirmed is not.

use crate::source::Origin;
use crate::{PullError, PullService};
use berth_oci::{Digest, MANIFEST_MEDIA_TYPES, Reference, RepoName};
use moka::sync::Cache;
use std::time::Duration;
use tokio::time::Instant;

/// How long a confirmation is trusted without asking upstream again.
const FRESH: Duration = Duration::from_secs(60);
/// How long a confirmation is kept for upstream outages.
const KEPT: Duration = Duration::from_secs(3600);
/// Grants remembered at most.
const CAPACITY: u64 = 100_000;

/// What a request asks for, which is what upstream is asked about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe<'a> {
    /// A manifest by tag or digest.
    Manifest(&'a Reference),
    /// A blob.
    Blob(&'a Digest),
}

/// Confirmed (credential, repository) pairs, by a hash of both.
#[derive(Debug)]
pub(crate) struct Grants {
    confirmed: Cache<Digest, Instant>,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            confirmed: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KEPT)
                .build(),
        }
    }
}

/// The key of a grant: the upstream, the repository and the credential,
/// hashed so that no credential is kept in memory as it is.
fn grant_key(origin: &Origin, repo: &RepoName) -> Digest {
    let credential = origin.client().unwrap_or("");
    Digest::of(format!("{}\n{repo}\n{credential}", origin.name()).as_bytes())
}

impl Grants {
    /// Whether the origin's client holds a grant for `repo` that is still
    /// fresh.
    pub(crate) fn fresh(&self, origin: &Origin, repo: &RepoName) -> bool {
        self.confirmed
            .get(&grant_key(origin, repo))
            .is_some_and(|at| at.elapsed() < FRESH)
    }

    /// Whether the origin's client was ever confirmed for `repo` (within
    /// the last hour).
    pub(crate) fn held(&self, origin: &Origin, repo: &RepoName) -> bool {
        self.confirmed.contains_key(&grant_key(origin, repo))
    }

    /// Note that upstream just answered the origin's client for `repo`.
    pub(crate) fn confirm(&self, origin: &Origin, repo: &RepoName) {
        self.confirmed
            .insert(grant_key(origin, repo), Instant::now());
    }
}

impl PullService {
    /// In pass-through mode, make sure upstream lets this client pull
    /// `repo` before anything cached is served; in managed mode every
    /// client pulls with berth's credentials, and there is nothing to ask.
    pub(super) async fn check_grant(
        &self,
        origin: &Origin,
        repo: &RepoName,
        probe: Probe<'_>,
    ) -> Result<(), PullError> {
        if !origin.is_passthrough() || self.grants.fresh(origin, repo) {
            return Ok(());
        }
        let asked = match probe {
            Probe::Manifest(reference) => {
                let accept: Vec<String> = MANIFEST_MEDIA_TYPES
                    .iter()
                    .map(|m| (*m).to_owned())
                    .collect();
                origin
                    .upstream
                    .head_manifest(repo, reference, &accept, origin.client())
                    .await
                    .map(|_| ())
            }
            Probe::Blob(digest) => origin
                .upstream
                .head_blob(repo, digest, origin.client())
                .await
                .map(|_| ()),
        };
        match asked {
            Ok(()) => {
                self.grants.confirm(origin, repo);
                if let Probe::Blob(digest) = probe {
                    self.link(origin, repo, &[*digest]).await;
                }
                Ok(())
            }
            Err(e) if e.is_outage() && self.grants.held(origin, repo) => {
                tracing::warn!(repository = %repo, error = %e, "upstream failed; serving a client it confirmed earlier");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
