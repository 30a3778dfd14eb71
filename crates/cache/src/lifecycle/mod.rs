//! The cache's lifecycle, on any store's [`Shelf`]: a size cap kept by
//! evicting the least recently used blobs, an age limit, and pins that
//! keep chosen repositories whatever their age.
//!
//! - Last access is kept by the shelf (on disk, the blob file's
//!   modification time). A hit does not write it: it is noted in memory
//!   (`last_use.rs`) and written for many blobs at once, every half minute
//!   and before each eviction pass. After a restart the shelf's record
//!   stands.
//! - The bytes on disk are counted in memory (`Usage`): added at each
//!   commit, and set to the exact total by each pass, which scans the
//!   store. The first pass runs at start-up, in the background; eviction
//!   waits for it.
//! - A pass (`evict.rs`) runs on a thread of its own when a commit takes
//!   the store over `max_size`, and every minute. It removes blobs older
//!   than `max_age`, then, above `max_size`, the least recently used ones
//!   until the store is under a low watermark (90 % of `max_size`), so it
//!   does not run at every commit. Blobs of pinned repositories stay. A
//!   blob being filled is not in the store yet, and one being served keeps
//!   its bytes (its reader holds the open file).
//! - What a pass removes is told to the hooks registered with
//!   `BlobStore::on_removal` (the engine's in-memory copies).

mod evict;
mod last_use;
mod pins;

use last_use::UseLog;
pub use pins::{PinPattern, store_pins, stored_pins};

use crate::{CacheError, Layout, RemovalHook, Shelf};
use berth_oci::Digest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long noted accesses wait before they are written to file times.
const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// How often a pass runs when nothing wakes it (for `max_age`).
const PASS_EVERY: Duration = Duration::from_secs(60);

/// What keeps the store bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// Bytes on disk the store is kept under.
    pub max_size: Option<u64>,
    /// Blobs unused for this long are removed.
    pub max_age: Option<Duration>,
    /// Repositories (`upstream/repository` patterns) never evicted.
    pub pins: Vec<PinPattern>,
}

impl Lifecycle {
    /// Whether anything is ever evicted.
    pub fn bounded(&self) -> bool {
        self.max_size.is_some() || self.max_age.is_some()
    }

    /// Where a pass above `max_size` stops.
    fn low_watermark(&self) -> Option<u64> {
        self.max_size.map(|max| max / 10 * 9)
    }
}

/// Bytes on disk of the committed blobs, as far as this process knows.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    bytes: AtomicU64,
    /// Whether the whole store was counted, by a pass or at start (before,
    /// `bytes` holds only this process's commits).
    measured: std::sync::atomic::AtomicBool,
}

impl Usage {
    /// The bytes on disk, once the store was counted.
    pub(crate) fn measured(&self) -> Option<u64> {
        self.measured.load(Ordering::Relaxed).then(|| self.get())
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` were removed outside a pass (a purge).
    pub(crate) fn remove(&self, bytes: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    pub(crate) fn get(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn set(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.measured.store(true, Ordering::Relaxed);
    }
}

/// The running lifecycle of one store: what wakes a pass, and who hears
/// of removals.
#[derive(Default)]
pub(crate) struct Keeper {
    pub(crate) usage: Usage,
    pub(crate) last_use: UseLog,
    limit: Mutex<Option<u64>>,
    wake: Notify,
    hooks: Mutex<Vec<RemovalHook>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

impl Keeper {
    /// A blob of `bytes` on disk was committed.
    pub(crate) fn committed(&self, bytes: u64) {
        self.usage.add(bytes);
        let limit = *self
            .limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if limit.is_some_and(|max| self.usage.get() > max) {
            self.wake.notify_one();
        }
    }

    /// The size cap in force, if any.
    pub(crate) fn limit(&self) -> Option<u64> {
        *self
            .limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn on_removal(&self, hook: RemovalHook) {
        self.hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    pub(crate) fn removed(&self, digest: &Digest) {
        let hooks = self
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for hook in hooks {
            hook(digest);
        }
    }

    /// Run the lifecycle of the blobs on `shelf` until the process ends
    /// (`layout`: the data directory, whose index names the pinned tags):
    /// write noted accesses every [`FLUSH_EVERY`], and, when `lifecycle`
    /// bounds the store, run a pass at once and then whenever a commit
    /// passes `max_size` or [`PASS_EVERY`] went by.
    pub(crate) fn start(
        self: &Arc<Self>,
        shelf: Arc<dyn Shelf>,
        layout: Layout,
        lifecycle: Lifecycle,
    ) {
        *self
            .limit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lifecycle.max_size;
        let keeper = Arc::clone(self);
        let flush_shelf = Arc::clone(&shelf);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                let (keeper, shelf) = (Arc::clone(&keeper), Arc::clone(&flush_shelf));
                let _ = tokio::task::spawn_blocking(move || keeper.last_use.flush(shelf.as_ref()))
                    .await;
            }
        });
        if !lifecycle.bounded() {
            // Nothing to evict, but the size is still worth knowing (the
            // dashboard, `/stats`): count the store once; commits and
            // removals keep the count from then on.
            let keeper = Arc::clone(self);
            tokio::spawn(async move {
                let counted = tokio::task::spawn_blocking(move || {
                    let total = shelf.scan()?.iter().map(|e| e.bytes).sum::<u64>();
                    keeper.usage.set(total);
                    Ok::<_, CacheError>(())
                })
                .await;
                if let Ok(Err(e)) = counted {
                    tracing::warn!(error = %e, "could not count the store's size");
                }
            });
            return;
        }
        let keeper = Arc::clone(self);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let (k, l, c) = (Arc::clone(&keeper), layout.clone(), lifecycle.clone());
                let s = Arc::clone(&shelf);
                match tokio::task::spawn_blocking(move || evict::pass(&k, &l, s.as_ref(), &c)).await
                {
                    Ok(Ok(report)) => {
                        report.log(first);
                        first = false;
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "eviction pass failed"),
                    Err(e) => tracing::error!(error = %e, "eviction pass ended unexpectedly"),
                }
                tokio::select! {
                    () = keeper.wake.notified() => {}
                    () = tokio::time::sleep(PASS_EVERY) => {}
                }
            }
        });
    }
}
