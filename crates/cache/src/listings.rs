//! Cached tag lists and referrers: small answers that change often, kept
//! for the upstream's `list_ttl` and served stale when upstream fails.

use serde::{Deserialize, Serialize};

/// What identifies one listing: the repository and the request below it
/// (`tags/list?n=10&last=a`, `referrers/<digest>?artifactType=...`), as
/// berth forwards it upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ListingKey {
    /// Upstream name.
    pub upstream: String,
    /// Repository, after upstream routing.
    pub repo: String,
    /// The request below the repository, with its checked query.
    pub request: String,
}

impl ListingKey {
    /// The key as one string: what the index file is named by the hash of,
    /// and what concurrent requests for the same listing wait on.
    pub fn id(&self) -> String {
        format!("{}\n{}\nlist {}", self.upstream, self.repo, self.request)
    }
}

/// A listing as served, and when upstream last gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingRecord {
    /// `Content-Type` to serve.
    pub content_type: String,
    /// `Link` to serve (a checked, relative `rel="next"`).
    pub link: Option<String>,
    /// The body (JSON).
    pub body: String,
    /// Unix time in milliseconds of the answer.
    pub checked_at_ms: u64,
}
