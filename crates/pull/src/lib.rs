//! The pull-through engine: cache-or-fetch for manifests and blobs, one
//! upstream fetch per digest however many clients ask, and a blob download
//! fanned out to every waiting reader while it is verified and committed.
//!
//! Knows nothing of HTTP requests or responses. Uses `berth-cache` (through
//! its store traits), `berth-upstream`, `berth-config` (the cache policy),
//! `berth-oci` and `berth-metrics`.

mod blobs;
mod clock;
mod direct;
mod download;
mod fill;
#[cfg(test)]
mod fill_tests;
mod flight;
mod grants;
mod job;
mod limits;
mod links;
mod listings;
mod manifests;
mod misses;
mod origin;
mod peers;
mod prefetch;
mod provenance;
mod relay;
mod shared;
mod source;
mod tags;
mod writer;

pub use blobs::OpenedBlob;
pub use clock::{Clock, ManualClock, SystemClock};
pub use fill::RunningFill;
pub use flight::{Claim, Flight, FlightLock, Hold, LocalFlights};
pub use listings::{Listing, ListingAnswer, ListingRequest};
pub use manifests::{ManifestAnswer, ManifestRequest};
pub use origin::{Origin, Origins};
pub use peers::Peers;
pub use relay::{ClientWrite, WriteTarget};
pub use source::{Download, DownloadBody, FillSource, UpstreamSource};

use berth_cache::{BlobStore, CacheError, HotBlobs, HotManifests, IndexStore};
use berth_metrics::Metrics;
use berth_oci::Digest;
use berth_upstream::UpstreamError;
use std::sync::Arc;

/// Memory for hot manifests (bytes of manifest JSON).
const HOT_MANIFEST_BYTES: u64 = 64 << 20;
/// Manifests whose repository links this process has recorded.
const EXPANDED_MANIFESTS: u64 = 100_000;
/// Memory for hot small blobs.
const HOT_BLOB_BYTES: u64 = 16 << 20;

/// How a request was answered, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache, without asking upstream.
    Hit,
    /// Fetched from upstream.
    Miss,
    /// Joined a fetch another request had started.
    Coalesced,
    /// From the cache after upstream confirmed it is current.
    Revalidated,
    /// From the cache because upstream failed (stale-if-error).
    Stale,
    /// Streamed from upstream without caching (the cache had no room).
    Direct,
    /// From the cache, where berth had fetched it ahead for this pull (its
    /// manifest came from upstream a moment before): the first request
    /// for a blob fetched ahead.
    Ahead,
}

impl Outcome {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Revalidated => "revalidated",
            Self::Stale => "stale",
            Self::Direct => "direct",
            Self::Ahead => "ahead",
        }
    }
}

/// Why a pull failed. Cheap to clone: one failure reaches every waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// Upstream failed or refused.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Upstream sent bytes that do not hash to the digest asked for.
    #[error("upstream {upstream} sent content for {expected} that hashes to {actual}")]
    DigestMismatch {
        /// Upstream name.
        upstream: String,
        /// Digest asked for.
        expected: Digest,
        /// Digest of what arrived.
        actual: Digest,
    },
    /// Upstream answered, but what it sent breaks a rule pull checks: a
    /// blob of the wrong size, a manifest whose type contradicts its bytes.
    /// Nothing of it is cached.
    #[error("upstream {upstream} sent an invalid answer: {detail}")]
    Unusable {
        /// Upstream name.
        upstream: String,
        /// What was wrong.
        detail: String,
    },
    /// The cache disk filled up while a blob of unknown size streamed in.
    #[error("no room in the cache: {0}")]
    NoRoom(String),
    /// The local cache failed: the disk, not berth. Such failures make
    /// new downloads bypass the cache for a while.
    #[error("cache storage failed: {0}")]
    Storage(#[source] Arc<CacheError>),
    /// berth itself failed: a task or thread ended unexpectedly, or a lock
    /// was poisoned. Not the disk's fault.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl PullError {
    /// Whether the cache disk failed (and new downloads should bypass it
    /// for a while), as opposed to upstream or berth itself.
    pub fn is_disk_failure(&self) -> bool {
        matches!(self, Self::Storage(_) | Self::NoRoom(_))
    }
}

impl From<CacheError> for PullError {
    fn from(e: CacheError) -> Self {
        Self::Storage(Arc::new(e))
    }
}

/// The engine. Built once at start-up and shared by every request.
#[derive(Debug)]
pub struct PullService {
    blobs: Arc<dyn BlobStore>,
    index: Arc<dyn IndexStore>,
    metrics: Arc<Metrics>,
    hot: HotManifests,
    hot_blobs: HotBlobs,
    misses: misses::Misses,
    /// Pass-through clients upstream confirmed, per repository.
    grants: grants::Grants,
    /// Failed flights, for the requests that waited for them.
    failures: shared::Failures,
    /// (upstream, repository, manifest) whose links are recorded.
    expanded: moka::sync::Cache<Digest, ()>,
    disk: Arc<direct::DiskHealth>,
    fills: fill::FillTable,
    flights: Arc<dyn FlightLock>,
    /// The other replicas, in a cluster.
    peers: Option<Arc<dyn Peers>>,
    /// What decides whether a tag answer or listing is fresh.
    clock: Arc<dyn Clock>,
    /// The eager byte budget, over every upstream (see `prefetch.rs`).
    eager: prefetch::EagerBudget,
    /// Blobs fetched ahead that no client asked for yet.
    ahead: prefetch::FetchedAhead,
    /// The engine itself, for the prefetch tasks it spawns.
    me: std::sync::Weak<PullService>,
}

/// What the engine takes from around it rather than owning: what keeps
/// each upstream request to one at a time, and the clock.
#[derive(Debug)]
pub struct Surroundings {
    /// Single flight (within this process by default).
    pub flights: Arc<dyn FlightLock>,
    /// The wall clock for freshness (the system's by default).
    pub clock: Arc<dyn Clock>,
    /// The other replicas, in a cluster (none by default).
    pub peers: Option<Arc<dyn Peers>>,
}

impl Default for Surroundings {
    fn default() -> Self {
        Self {
            flights: Arc::new(LocalFlights::default()),
            clock: Arc::new(SystemClock),
            peers: None,
        }
    }
}

impl PullService {
    /// An engine over the given stores, with single flight within this
    /// process, and at most `eager_bytes` of layers fetched ahead of
    /// clients in flight at once.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        index: Arc<dyn IndexStore>,
        metrics: Arc<Metrics>,
        eager_bytes: u64,
    ) -> Arc<Self> {
        Self::with_surroundings(blobs, index, metrics, eager_bytes, Surroundings::default())
    }

    /// An engine over the given stores, taking single flight and the
    /// time from `surroundings`.
    pub fn with_surroundings(
        blobs: Arc<dyn BlobStore>,
        index: Arc<dyn IndexStore>,
        metrics: Arc<Metrics>,
        eager_bytes: u64,
        surroundings: Surroundings,
    ) -> Arc<Self> {
        let Surroundings {
            flights,
            clock,
            peers,
        } = surroundings;
        let hot = HotManifests::new(HOT_MANIFEST_BYTES);
        let hot_blobs = HotBlobs::new(HOT_BLOB_BYTES);
        // What the store removes is never served from memory afterwards.
        let (manifests, small) = (hot.clone(), hot_blobs.clone());
        blobs.on_removal(Arc::new(move |digest: &Digest| {
            manifests.remove(digest);
            small.remove(digest);
        }));
        Arc::new_cyclic(|me| Self {
            blobs,
            index,
            metrics,
            hot,
            hot_blobs,
            misses: misses::Misses::default(),
            grants: grants::Grants::default(),
            failures: shared::Failures::default(),
            expanded: moka::sync::Cache::new(EXPANDED_MANIFESTS),
            disk: Arc::default(),
            fills: fill::FillTable::default(),
            flights,
            peers,
            clock,
            eager: prefetch::EagerBudget::new(eager_bytes),
            ahead: prefetch::FetchedAhead::default(),
            me: me.clone(),
        })
    }

    /// Bytes the store holds against its cap, as far as it knows.
    pub fn store_usage(&self) -> berth_cache::StoreUsage {
        self.blobs.usage()
    }

    /// The repositories with a cached tag, sorted, for the catalog.
    pub async fn repositories(&self) -> Result<Vec<berth_cache::RepoKey>, PullError> {
        Ok(self.index.repositories().await?)
    }

    /// The blob downloads running, with their progress.
    pub fn fills_in_flight(&self) -> Vec<RunningFill> {
        self.fills.running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_disk_counts_as_a_disk_failure() {
        let digest = Digest::of(b"x");
        let disk = PullError::from(CacheError::Io {
            op: "read",
            subject: format!("cached blob {digest}"),
            error: std::io::Error::other("EIO"),
        });
        assert!(disk.is_disk_failure());
        assert!(
            std::error::Error::source(&disk).is_some(),
            "the cause is kept"
        );
        assert!(PullError::from(CacheError::NoRoom("full".into())).is_disk_failure());
        assert!(PullError::NoRoom("nearly full".into()).is_disk_failure());
        let unusable = PullError::Unusable {
            upstream: "u".into(),
            detail: "short".into(),
        };
        assert!(!unusable.is_disk_failure());
        let thread = PullError::Internal("blob writer thread failed".into());
        assert!(!thread.is_disk_failure());
        let upstream = PullError::from(UpstreamError::Busy {
            upstream: "u".into(),
            waited: std::time::Duration::from_secs(1),
        });
        assert!(!upstream.is_disk_failure());
    }
}
