//! The Redis key of each kind of shared record. Every key starts with
//! `berth:`; a lease and its fencing counter share a hash tag (`{…}`), so
//! the scripts that touch both work on Redis Cluster too.

use berth_cache::{ListingKey, RepoKey, TagKey};
use berth_oci::Digest;

/// The answers cached for a tag.
pub(crate) fn tag(key: &TagKey) -> String {
    format!("berth:tag:{}/{}:{}", key.upstream, key.repo, key.tag)
}

/// A cached tag list or referrers answer.
pub(crate) fn listing(key: &ListingKey) -> String {
    format!(
        "berth:listing:{}/{}:{}",
        key.upstream, key.repo, key.request
    )
}

/// The digests a repository is known to reference.
pub(crate) fn links(repo: &RepoKey) -> String {
    format!("berth:links:{}/{}", repo.upstream, repo.repo)
}

/// Every repository with a cached tag, as `upstream\nrepo`.
pub(crate) const REPOSITORIES: &str = "berth:repositories";

/// A cached manifest's media type.
pub(crate) fn manifest_type(digest: &Digest) -> String {
    format!("berth:type:{digest}")
}

/// The lease on a flight.
pub(crate) fn lease(flight: &str) -> String {
    format!("berth:lease:{{{}}}", flight.replace(['{', '}'], "_"))
}

/// The fencing counter of a flight's leases (same hash slot as the lease).
pub(crate) fn fence(flight: &str) -> String {
    format!("berth:fence:{{{}}}", flight.replace(['{', '}'], "_"))
}

/// The replicas that hold a blob on their own disk.
pub(crate) fn holders(digest: &Digest) -> String {
    format!("berth:holders:{digest}")
}

/// A fleet-wide rate limit's bucket (`ip:…`, `user:…`, `login:…`).
pub(crate) fn bucket(key: &str) -> String {
    format!("berth:rate:{key}")
}

/// The request slots held for an upstream, over the fleet.
pub(crate) fn slots(upstream: &str) -> String {
    format!("berth:slots:{upstream}")
}

/// A replica's heartbeat.
pub(crate) fn node(url: &str) -> String {
    format!("berth:node:{url}")
}

/// What the heartbeats are listed under.
pub(crate) const NODES: &str = "berth:node:*";
