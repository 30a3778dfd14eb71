//! Fills through the seams, in process: a `FillSource` that serves canned
//! chunks (or counts that it was never asked) and a `MemoryStore`.

use crate::direct::DiskHealth;
use crate::fill::{FillJob, FillTable, Joined};
use crate::flight::LocalFlights;
use crate::misses::Misses;
use crate::source::{Download, FillSource};
use async_trait::async_trait;
use berth_cache::{BlobStore, Lookup, MemoryStore, ProgressState};
use berth_config::CachePolicy;
use berth_metrics::Metrics;
use berth_oci::{Digest, RepoName};
use berth_upstream::{UpstreamError, Urgency};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Serves `chunks` for any digest, counting the fetches.
#[derive(Debug, Default)]
struct Canned {
    chunks: Vec<Bytes>,
    /// Answer "not found" instead.
    missing: bool,
    fetches: AtomicUsize,
}

#[async_trait]
impl FillSource for Canned {
    fn name(&self) -> &str {
        "canned"
    }

    async fn fetch(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
        offset: u64,
        _urgency: &Urgency,
    ) -> Result<Download, UpstreamError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        assert_eq!(offset, 0, "nothing here breaks, so nothing resumes");
        if self.missing {
            return Err(UpstreamError::NotFound {
                upstream: "canned".to_owned(),
                resource: berth_oci::Resource::Blob,
                code: None,
            });
        }
        let size = self.chunks.iter().map(|c| c.len() as u64).sum();
        let chunks: Vec<Result<Bytes, UpstreamError>> =
            self.chunks.iter().cloned().map(Ok).collect();
        Ok(Download {
            size: Some(size),
            body: Box::pin(futures_util::stream::iter(chunks)),
        })
    }
}

fn job(store: &Arc<MemoryStore>, source: &Arc<Canned>, digest: Digest) -> FillJob {
    FillJob {
        blobs: Arc::clone(store) as Arc<dyn BlobStore>,
        source: Arc::clone(source) as Arc<dyn FillSource>,
        policy: Arc::new(CachePolicy::default()),
        flights: Arc::new(LocalFlights::default()),
        peers: None,
        repo: "proj/app".parse().unwrap(),
        digest,
        metrics: Arc::new(Metrics::new()),
        disk: Arc::new(DiskHealth::default()),
        misses: Misses::default(),
        unattended: Arc::new(Semaphore::new(1)),
        urgency: Urgency::now(),
        eager: None,
    }
}

/// Wait until the fill read through `handle` is over, and say how.
async fn outcome(joined: Joined) -> ProgressState {
    let Joined::Fill { mut handle, .. } = joined else {
        panic!("expected a fill")
    };
    let progress = handle
        .progress
        .wait_for(|p| p.state != ProgressState::Filling)
        .await
        .unwrap();
    progress.state
}

#[tokio::test]
async fn a_fill_that_finds_its_blob_already_stored_downloads_nothing() {
    let store = Arc::new(MemoryStore::new(1 << 20));
    let data = Bytes::from_static(b"committed by someone else meanwhile");
    let digest = Digest::of(&data);
    store.put_small(&digest, data).await.unwrap();
    let source = Arc::new(Canned::default());

    let joined = FillTable::default()
        .join_or_start(job(&store, &source, digest))
        .await
        .unwrap();
    assert!(matches!(joined, Joined::Stored), "{joined:?}");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_fill_commits_what_hashed_to_its_digest_and_nothing_else() {
    let store = Arc::new(MemoryStore::new(1 << 20));
    let good = Arc::new(Canned {
        chunks: vec![Bytes::from_static(b"layer "), Bytes::from_static(b"bytes")],
        ..Canned::default()
    });
    let digest = Digest::of(b"layer bytes");
    let joined = FillTable::default()
        .join_or_start(job(&store, &good, digest))
        .await
        .unwrap();
    assert_eq!(outcome(joined).await, ProgressState::Complete);
    // The commit follows the last byte; wait for it.
    for _ in 0..100 {
        if matches!(store.lookup(&digest).await.unwrap(), Lookup::Hit(_)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let Lookup::Hit(hit) = store.lookup(&digest).await.unwrap() else {
        panic!("a verified fill was not stored")
    };
    assert_eq!(hit.bytes().await.unwrap(), &b"layer bytes"[..]);

    let liar = Arc::new(Canned {
        chunks: vec![Bytes::from_static(b"other bytes")],
        ..Canned::default()
    });
    let claimed = Digest::of(b"what was asked for");
    let joined = FillTable::default()
        .join_or_start(job(&store, &liar, claimed))
        .await
        .unwrap();
    assert_eq!(outcome(joined).await, ProgressState::Failed);
    assert!(matches!(
        store.lookup(&claimed).await.unwrap(),
        Lookup::Miss
    ));
    assert_eq!(store.digests(), vec![digest]);
}

#[tokio::test]
async fn a_request_that_looked_before_a_not_found_was_remembered_starts_no_second_fill() {
    let store = Arc::new(MemoryStore::new(1 << 20));
    let source = Arc::new(Canned {
        missing: true,
        ..Canned::default()
    });
    let digest = Digest::of(b"nowhere");
    let table = FillTable::default();
    let misses = Misses::default();
    for _ in 0..2 {
        // Both requests found no remembered miss before they came here.
        let joined = table
            .join_or_start(FillJob {
                misses: misses.clone(),
                ..job(&store, &source, digest)
            })
            .await;
        assert!(
            matches!(
                joined,
                Err(crate::PullError::Upstream(UpstreamError::NotFound { .. }))
            ),
            "{joined:?}"
        );
    }
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
}
