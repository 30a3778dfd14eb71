//! A fill's job: everything the task that downloads one blob needs (the
//! store, the source, the policy and limits, the flight lock, the shared
//! counters), handed over when the fill starts.

use crate::direct::DiskHealth;
use crate::flight::FlightLock;
use crate::misses::{Misses, blob_key};
use crate::source::FillSource;
use berth_cache::BlobStore;
use berth_config::CachePolicy;
use berth_metrics::Metrics;
use berth_oci::{Digest, RepoName};
use berth_upstream::Urgency;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Everything a fill task needs.
#[derive(Debug)]
pub(super) struct FillJob {
    pub(super) blobs: Arc<dyn BlobStore>,
    pub(super) source: Arc<dyn FillSource>,
    pub(super) policy: Arc<CachePolicy>,
    pub(super) flights: Arc<dyn FlightLock>,
    /// The other replicas, in a cluster.
    pub(super) peers: Option<Arc<dyn crate::Peers>>,
    pub(super) repo: RepoName,
    pub(super) digest: Digest,
    pub(super) metrics: Arc<Metrics>,
    pub(super) disk: Arc<DiskHealth>,
    pub(super) misses: Misses,
    /// The upstream's share of fills that may go on with no client.
    pub(super) unattended: Arc<Semaphore>,
    /// Whether a client waits for the download (a prefetch: not yet).
    pub(super) urgency: Urgency,
    /// A prefetch's share of the eager byte budget, which lets it go on
    /// with no client in place of an unattended permit.
    pub(super) eager: Option<OwnedSemaphorePermit>,
}

impl FillJob {
    /// The key under which upstream's "not found" for this blob is kept.
    pub(super) fn miss_key(&self) -> String {
        blob_key(self.source.name(), &self.repo, &self.digest)
    }

    /// The cache disk failed a write: count it, and bypass the cache a while.
    pub(super) fn disk_write_failed(&self) {
        self.disk.write_failed();
        self.metrics.cache_write_failures.inc();
    }
}
