//! What a serving berth does to its own store when asked (through its
//! control socket or its admin endpoints): purge, which also drops the
//! in-memory copies of what it removes, and index garbage collection. One
//! runs at a time, on a blocking thread, so serving never waits for a scan.

use crate::{CacheError, FsIndex, FsStore, GcReport, PinPattern, PurgeReport, collect_garbage};
use std::sync::Arc;

/// What purge and gc cannot do yet on a store other than the local disk.
const NOT_ON_OBJECTS: &str =
    "purge and gc work on the local disk store; with backend = \"s3\" they are not available yet";

/// The maintenance a serving process runs on its store and index.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// The local disk store; `None` when blobs live elsewhere.
    store: Option<Arc<FsStore>>,
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
    /// Maintenance of `store` and `index`, the ones this process serves.
    pub fn new(store: Arc<FsStore>, index: Arc<FsIndex>) -> Self {
        Self {
            store: Some(store),
            index,
            one_at_a_time: Arc::default(),
        }
    }

    /// Maintenance of a berth whose blobs are not on local disk: purge and
    /// gc answer [`CacheError::Unsupported`].
    pub fn elsewhere(index: Arc<FsIndex>) -> Self {
        Self {
            store: None,
            index,
            one_at_a_time: Arc::default(),
        }
    }

    /// Remove the tags of the repositories `pattern` matches and the blobs
    /// only they need, from disk and from memory.
    pub async fn purge(&self, pattern: PinPattern) -> Result<PurgeReport, CacheError> {
        let store = Arc::clone(
            self.store
                .as_ref()
                .ok_or(CacheError::Unsupported(NOT_ON_OBJECTS))?,
        );
        let _turn = self.one_at_a_time.lock().await;
        let shown = pattern.to_string();
        let report = joined(tokio::task::spawn_blocking(move || store.purge(&pattern)).await)?;
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
        let store = self
            .store
            .as_ref()
            .ok_or(CacheError::Unsupported(NOT_ON_OBJECTS))?;
        let _turn = self.one_at_a_time.lock().await;
        let layout = store.layout().clone();
        let report = joined(tokio::task::spawn_blocking(move || collect_garbage(&layout)).await)?;
        tracing::info!(
            tags = report.tags,
            manifest_types = report.manifest_types,
            "collected the index's garbage"
        );
        Ok(report)
    }
}
