//! Layers fetched before clients ask for them. A client that has a
//! manifest asks for its config and layers next, a few at a time; over a
//! far link each of those requests is slow on its own. So when a manifest
//! comes from upstream (not from the cache), berth starts a fill for each
//! blob it names at once, as a prefetch:
//! - it waits behind every upstream request a client waits for, and moves
//!   up when a client asks for its blob (the client joins the fill);
//! - all prefetches together hold at most `[cache] eager_bytes` of
//!   declared size; a blob that would pass it is not fetched ahead;
//! - it is skipped when the cache disk has less room than the blob plus a
//!   margin, so prefetches are the first thing a filling disk gives up.
//!
//! For an index, the manifests of the upstream's `prefetch_platforms` are
//! fetched by digest, and through them their layers.
//!
//! A blob fetched ahead is marked until a client first asks for it: that
//! request is answered from the cache, but the pull it belongs to brought
//! the blob, so it counts as [`Outcome::Ahead`](crate::Outcome::Ahead)
//! (`X-Cache: MISS`), not as a hit.

use crate::PullService;
use crate::manifests::ManifestRequest;
use crate::origin::Origin;
use berth_oci::{BlobRef, Digest, Reference, RepoName, references};
use berth_upstream::Urgency;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Free space a prefetch leaves on the cache disk beyond its own size.
const ROOM_MARGIN: u64 = 256 << 20;

/// Marks at most this many blobs fetched ahead and not yet asked for;
/// past it, the oldest marks are forgotten all at once.
const MAX_AHEAD_MARKS: usize = 16_384;

/// Blobs fetched ahead that no client has asked for yet.
#[derive(Debug, Default)]
pub(super) struct FetchedAhead {
    marks: Mutex<HashSet<Digest>>,
    /// Whether `marks` may hold any: a hit looks at this alone while no
    /// prefetch is pending.
    any: AtomicBool,
}

impl FetchedAhead {
    fn mark(&self, digest: Digest) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        if marks.len() >= MAX_AHEAD_MARKS {
            marks.clear();
        }
        marks.insert(digest);
        self.any.store(true, Ordering::Release);
    }

    /// Whether `digest` was fetched ahead and not asked for before; the
    /// mark goes either way.
    pub(super) fn take(&self, digest: &Digest) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = marks.remove(digest);
        if marks.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        taken
    }
}

/// The bytes prefetches may hold in flight, over every upstream, counted
/// in KiB (a semaphore counts in `u32` steps).
#[derive(Debug)]
pub(super) struct EagerBudget {
    kib: Arc<Semaphore>,
}

impl EagerBudget {
    pub(super) fn new(bytes: u64) -> Self {
        let kib = usize::try_from(bytes / 1024)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            kib: Arc::new(Semaphore::new(kib)),
        }
    }

    /// A share for a blob of `size` bytes, if the budget has room for it.
    fn take(&self, size: u64) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(size.div_ceil(1024).max(1)).ok()?;
        Arc::clone(&self.kib).try_acquire_many_owned(kib).ok()
    }
}

impl PullService {
    /// `bytes`, a manifest of `repo`, came from upstream: prefetch what
    /// it names, in a task of its own.
    pub(super) fn prefetch(&self, origin: &Origin, repo: &RepoName, bytes: &[u8]) {
        if !origin.policy.eager_layers {
            return;
        }
        let named = references(bytes);
        let platforms = &origin.policy.prefetch_platforms;
        let children: Vec<_> = named
            .manifests
            .iter()
            .filter(|m| platforms.contains(&m.platform))
            .map(|m| m.digest)
            .collect();
        if named.blobs.is_empty() && children.is_empty() {
            return;
        }
        let Some(engine) = self.me.upgrade() else {
            return;
        };
        let (origin, repo) = (origin.clone(), repo.clone());
        tokio::spawn(async move {
            for blob in named.blobs {
                engine.prefetch_blob(&origin, &repo, &blob).await;
            }
            for digest in children {
                let reference = Reference::Digest(digest);
                let req = ManifestRequest {
                    origin: &origin,
                    repo: &repo,
                    reference: &reference,
                    accept: &[],
                };
                // Fetched from upstream, it prefetches its own layers.
                if let Err(e) = Box::pin(engine.manifest(&req)).await {
                    tracing::info!(%digest, error = %e, "platform manifest not prefetched");
                }
            }
        });
    }

    /// Start a prefetch of `blob`, unless it is cached or being fetched,
    /// or the budget or the disk has no room for it.
    async fn prefetch_blob(&self, origin: &Origin, repo: &RepoName, blob: &BlobRef) {
        let skip = |why: &str| {
            self.metrics.cache("blob", "eager_skipped");
            tracing::debug!(digest = %blob.digest, size = blob.size, reason = why, "blob not prefetched");
        };
        if self.disk.bypass() || self.hot_blobs.get(&blob.digest).is_some() {
            return;
        }
        match self.blobs.size(&blob.digest).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(_) => return skip("the store cannot be read"),
        }
        if blob.size > origin.policy.fills.max_blob_size {
            return skip("larger than max_blob_size");
        }
        let Some(share) = self.eager.take(blob.size) else {
            return skip("eager_bytes are in flight");
        };
        if self
            .blobs
            .reserve(blob.size.saturating_add(ROOM_MARGIN))
            .await
            .is_err()
        {
            return skip("the cache disk is nearly full");
        }
        self.mark_provenance(origin, &blob.digest).await;
        let job = crate::fill::FillJob {
            urgency: Urgency::later(),
            eager: Some(share),
            ..self.fill_job(origin, repo, &blob.digest)
        };
        // Marked first, so that a client asking the moment the fill starts
        // finds the mark (and takes it); unmarked if no fill started.
        self.ahead.mark(blob.digest);
        if self.fills.start_eager(job) {
            self.metrics.cache("blob", "eager");
        } else {
            self.ahead.take(&blob.digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_holds_what_it_was_given_and_no_more() {
        let budget = EagerBudget::new(10 << 20);
        let first = budget.take(6 << 20).unwrap();
        assert!(budget.take(6 << 20).is_none());
        let small = budget.take(1).unwrap();
        drop(first);
        assert!(budget.take(6 << 20).is_some());
        drop(small);
        assert!(EagerBudget::new(0).take(1).is_none());
        assert!(EagerBudget::new(u64::MAX).take(u64::MAX).is_none());
    }
}
