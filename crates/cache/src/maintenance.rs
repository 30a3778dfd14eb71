//! What a serving berth does to its own store when asked (through its
//! control socket or its admin endpoints): purge, which also drops the
//! in-memory copies of what it removes, and index garbage collection. One
//! runs at a time, on a blocking thread, so serving never waits for a scan.
//! Both work on the store's [`Shelf`], whatever the backend.

use crate::lifecycle::Keeper;
use crate::{
    CacheError, FsIndex, GcReport, Layout, PinPattern, PurgeReport, Shelf, collect_garbage,
};
use std::sync::Arc;

/// What maintenance needs of a store: its blobs, and its lifecycle's
/// bookkeeping (who hears of removals, the bytes it counts).
#[derive(Debug, Clone)]
pub struct Upkeep {
    shelf: Arc<dyn Shelf>,
    keeper: Arc<Keeper>,
}

impl Upkeep {
    pub(crate) fn new(shelf: Arc<dyn Shelf>, keeper: Arc<Keeper>) -> Self {
        Self { shelf, keeper }
    }
}

/// The maintenance a serving process runs on its store and index.
#[derive(Debug, Clone)]
pub struct Maintenance {
    upkeep: Upkeep,
    layout: Layout,
    index: Arc<FsIndex>,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

fn joined<T>(
    result: Result<Result<T, CacheError>, tokio::task::JoinError>,
) -> Result<T, CacheError> {
    result.unwrap_or_else(|e| {
        Err(CacheError::Io {
            op: "run maintenance on",
            subject: "the store".to_owned(),
            error: std::io::Error::other(e.to_string()),
        })
    })
}

impl Maintenance {
    /// Maintenance of the store `upkeep` describes and of `index`, the
    /// index in the data directory `layout`: the ones this process serves.
    pub fn new(upkeep: Upkeep, layout: Layout, index: Arc<FsIndex>) -> Self {
        Self {
            upkeep,
            layout,
            index,
            one_at_a_time: Arc::default(),
        }
    }

    /// Remove the tags of the repositories `pattern` matches and the blobs
    /// only they need, from the store and from memory.
    pub async fn purge(&self, pattern: PinPattern) -> Result<PurgeReport, CacheError> {
        let _turn = self.one_at_a_time.lock().await;
        let shown = pattern.to_string();
        let (layout, upkeep) = (self.layout.clone(), self.upkeep.clone());
        let report = joined(
            tokio::task::spawn_blocking(move || {
                let keeper = &upkeep.keeper;
                let report = crate::purge::purge(&layout, upkeep.shelf.as_ref(), &pattern, &|d| {
                    keeper.removed(d);
                })?;
                keeper.usage.remove(report.bytes);
                Ok(report)
            })
            .await,
        )?;
        self.index.forget_tags(&report.tags);
        tracing::info!(
            pattern = shown,
            tags = report.tags.len(),
            blobs = report.blobs.len(),
            bytes = report.bytes,
            "purged"
        );
        Ok(report)
    }

    /// Remove the index entries whose content has left the store.
    pub async fn collect_garbage(&self) -> Result<GcReport, CacheError> {
        let _turn = self.one_at_a_time.lock().await;
        let (layout, shelf) = (self.layout.clone(), Arc::clone(&self.upkeep.shelf));
        let report = joined(
            tokio::task::spawn_blocking(move || collect_garbage(&layout, shelf.as_ref())).await,
        )?;
        tracing::info!(
            tags = report.tags,
            manifest_types = report.manifest_types,
            "collected the index's garbage"
        );
        Ok(report)
    }
}
