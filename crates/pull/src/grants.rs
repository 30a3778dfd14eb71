//! Grants: in pass-through mode, which client credential upstream has
//! confirmed may pull which repository. Cached content of a repository is
//! served to a client only under such a grant; without one, berth first
//! asks upstream with the client's own `Authorization` (a HEAD of what was
//! asked for), and passes a refusal on. A client without credentials is one
//! more credential: "anonymous".
//!
//! A grant is trusted for a minute, then asked again. It is kept for an
//! hour, so that while upstream is down a client confirmed before keeps
//! being served from the cache; one never confirmed is not. One check runs
//! per credential and repository at a time, and a refusal is repeated for
//! a few seconds without asking again.

use crate::origin::Origin;
use crate::{PullError, PullService};
use berth_oci::{Digest, MANIFEST_MEDIA_TYPES, Reference, RepoName};
use berth_upstream::UpstreamError;
use moka::sync::Cache;
use std::time::Duration;
use tokio::time::Instant;

/// How long a confirmation is trusted without asking upstream again.
const FRESH: Duration = Duration::from_secs(60);
/// How long a confirmation is kept for upstream outages.
const KEPT: Duration = Duration::from_secs(3600);
/// How long a refusal is repeated without asking upstream again: a
/// made-up credential asked about over and over costs one check.
const REFUSAL_KEPT: Duration = Duration::from_secs(5);
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

/// Confirmed (credential, repository) pairs, by a hash of both, and the
/// credentials upstream confirmed for anything.
#[derive(Debug)]
pub(crate) struct Grants {
    confirmed: Cache<Digest, Instant>,
    credentials: Cache<Digest, ()>,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            confirmed: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KEPT)
                .build(),
            credentials: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KEPT)
                .build(),
        }
    }
}

/// The key of a credential at an upstream, hashed.
fn credential_key(origin: &Origin) -> Digest {
    let credential = origin.client_authorization().unwrap_or("");
    Digest::of(format!("{}\n{credential}", origin.name()).as_bytes())
}

/// The key of a grant: the upstream, the repository and the credential,
/// hashed so that no credential is kept in memory as it is.
fn grant_key(origin: &Origin, repo: &RepoName) -> Digest {
    let credential = origin.client_authorization().unwrap_or("");
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
        self.credentials.insert(credential_key(origin), ());
    }
}

impl PullService {
    /// Note that upstream accepted the origin's client credential (it
    /// answered something other than a refusal), so it spends no more of
    /// the client's budget for unconfirmed credentials.
    pub fn credential_accepted(&self, origin: &Origin) {
        if origin.is_passthrough() {
            self.grants.credentials.insert(credential_key(origin), ());
        }
    }
}

impl PullService {
    /// Whether upstream has confirmed the origin's client credential for
    /// any repository within the last hour (always, in managed mode). The
    /// edge gives credentials it has not a small budget per client, so a
    /// flood of made-up tokens cannot become a flood of upstream checks.
    pub fn credential_known(&self, origin: &Origin) -> bool {
        !origin.is_passthrough()
            || self
                .grants
                .credentials
                .contains_key(&credential_key(origin))
    }

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
        // One check per credential and repository at a time; the requests
        // behind it share its answer.
        let id = format!("grant {}", grant_key(origin, repo));
        let boarded = self.board_within(origin, &id, REFUSAL_KEPT).await?;
        if self.grants.fresh(origin, repo) {
            return Ok(());
        }
        if let Some(e) = boarded.failed_before {
            return Err(e);
        }
        let result = self.ask_grant(origin, repo, probe).await;
        self.landed(&id, &result);
        result
    }

    /// Ask upstream whether the origin's client may pull `repo`.
    async fn ask_grant(
        &self,
        origin: &Origin,
        repo: &RepoName,
        probe: Probe<'_>,
    ) -> Result<(), PullError> {
        let asked = match probe {
            Probe::Manifest(reference) => {
                let accept: Vec<String> = MANIFEST_MEDIA_TYPES
                    .iter()
                    .map(|m| (*m).to_owned())
                    .collect();
                origin
                    .upstream
                    .head_manifest(repo, reference, &accept, origin.client_authorization())
                    .await
                    .map(|_| ())
            }
            Probe::Blob(digest) => origin
                .upstream
                .head_blob(repo, digest, origin.client_authorization())
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
            Err(e) => {
                // "Not found" is an answer to an accepted credential.
                if matches!(e, UpstreamError::NotFound { .. }) {
                    self.credential_accepted(origin);
                }
                Err(e.into())
            }
        }
    }
}
