//! Where content came from, as far as the private-content guard needs it:
//! whether an upstream fetched a digest with credentials (berth's own
//! `username`, or a pass-through client's). Such content is served only
//! through the upstream that fetched it with them: another upstream that
//! merely answers a HEAD for the digest (a hostile one, or anyone in the
//! middle of an `http://` upstream) cannot confirm it, and must deliver
//! the bytes itself, streamed and verified, never the cached copy nor a
//! download in flight. Content only ever fetched anonymously is shared
//! across upstreams as before.
//!
//! The marks live in the index's link table, under keys no upstream can
//! have (`<credentialed>`), so they survive restarts like links do. A
//! digest is marked before its fetch starts, so a request that would join
//! the download in flight already sees the mark.

use crate::origin::Origin;
use crate::{PullError, PullService};
use berth_cache::RepoKey;
use berth_oci::Digest;

/// The pseudo-upstream of provenance marks: not a registry name, so no
/// configured upstream shares its keys.
const MARKS: &str = "<credentialed>";
/// The mark "some upstream fetched this with credentials".
const ANY: &str = "*";

fn mark(who: &str) -> RepoKey {
    RepoKey {
        upstream: MARKS.to_owned(),
        repo: who.to_owned(),
    }
}

impl PullService {
    /// Whether `origin` carries credentials upstream: berth's own, or a
    /// pass-through client's.
    fn credentialed(origin: &Origin) -> bool {
        if origin.is_passthrough() {
            origin.client_authorization().is_some()
        } else {
            origin.upstream.config().credentials.is_some()
        }
    }

    /// Mark `digest` as fetched with credentials through `origin`, when it
    /// is about to be. A failure to record is logged: the guard then errs
    /// the other way for this digest (it stays shareable), as before.
    pub(crate) async fn mark_provenance(&self, origin: &Origin, digest: &Digest) {
        if !Self::credentialed(origin) {
            return;
        }
        for who in [ANY, origin.name()] {
            if let Err(e) = self.index.link(&mark(who), &[*digest]).await {
                tracing::warn!(%digest, error = %e, "could not record where content came from");
            }
        }
    }

    /// Whether `digest` was fetched with credentials through some upstream
    /// but never through `origin`'s: then `origin` may not be confirmed
    /// for it by a HEAD, nor served the copy another upstream fetched.
    pub(crate) async fn private_elsewhere(
        &self,
        origin: &Origin,
        digest: &Digest,
    ) -> Result<bool, PullError> {
        if !self.index.linked(&mark(ANY), digest).await? {
            return Ok(false);
        }
        Ok(!self.index.linked(&mark(origin.name()), digest).await?)
    }
}
