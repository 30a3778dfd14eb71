//! One upstream download per digest. The first request for a missing blob
//! starts a fill task that owns the download. The task takes the flight
//! lock for the digest and looks in the store once more (the blob may have
//! been stored since the request looked), then begins a store writer,
//! writes into it from a thread of its own (with a hashing thread beside
//! it), publishes progress to every reader, and finishes the writer only
//! with the proof that the digest matched (the copy itself: `download.rs`)
//! and while its flight is still its own (`may_publish`).
//! Readers tail the writer at their own pace, so the fill is never slowed
//! by a slow client, and it goes on when its clients disconnect, within
//! the limits of `limits.rs`. A prefetch is a fill started with nobody
//! waiting (`start_eager`); a client that asks for its blob joins it and
//! raises its urgency.

use crate::PullError;
use crate::download::{Stop, copy};
use crate::flight::{Claim, Flight};
pub(super) use crate::job::FillJob;
use crate::source::Download;
use berth_cache::{BlobContent, CacheError, Lookup, Progress, ProgressState};
use berth_metrics::UpstreamLabels;
use berth_oci::{Digest, Resource};
use berth_upstream::{UpstreamError, Urgency};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A fill whose download has started: readers open this.
#[derive(Debug, Clone)]
pub(super) struct FillHandle {
    /// The bytes written so far (the writer's tail).
    pub(super) content: Arc<dyn BlobContent>,
    pub(super) progress: watch::Receiver<Progress>,
    pub(super) size: Option<u64>,
}

/// A fill whose download has started, as the fill table holds it: readers
/// subscribe to its progress when they join, so that the fill can tell
/// when none is left.
#[derive(Debug, Clone)]
struct Started {
    content: Arc<dyn BlobContent>,
    progress: watch::Sender<Progress>,
    size: Option<u64>,
}

/// Where a fill stands before its body flows.
#[derive(Debug, Clone)]
enum FillStart {
    Pending,
    Started(Started),
    Failed(PullError),
    /// The blob was in the store after all: read it from there.
    Stored,
    /// The cache has no room: the first taker streams this download
    /// directly, later ones start their own.
    NoRoom(Arc<Mutex<Option<Download>>>),
}

/// What joining a fill gives.
#[derive(Debug)]
pub(super) enum Joined {
    /// Read the fill.
    Fill {
        /// The fill to read.
        handle: FillHandle,
        /// Another request started it: this one joined.
        coalesced: bool,
    },
    /// Stream from upstream without caching: this download if one was
    /// handed over, else start one.
    Direct(Option<Download>),
    /// The blob is in the store now: look it up again.
    Stored,
}

/// A fill in the table: where it stands, and how urgent its upstream
/// request is (raised when a client joins a prefetch).
#[derive(Debug, Clone)]
struct Entry {
    start: watch::Receiver<FillStart>,
    urgency: Urgency,
}

type Fills = Arc<Mutex<HashMap<Digest, Entry>>>;

/// A blob download in progress, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningFill {
    /// The blob.
    pub digest: Digest,
    /// Bytes received and written so far.
    pub received: u64,
    /// Its size, when upstream said.
    pub size: Option<u64>,
}

/// In-flight fills by digest.
#[derive(Debug, Default)]
pub(super) struct FillTable {
    fills: Fills,
}

/// Removes the table entry when the fill task ends, however it ends.
struct Deregister {
    fills: Fills,
    digest: Digest,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Ok(mut fills) = self.fills.lock() {
            fills.remove(&self.digest);
        }
    }
}

impl FillTable {
    /// A handle on the fill for `job.digest`: an existing one (the flag is
    /// true: coalesced) or a new one started with `job`.
    pub(super) async fn join_or_start(&self, job: FillJob) -> Result<Joined, PullError> {
        let (mut rx, mine) = {
            let mut fills = self
                .fills
                .lock()
                .map_err(|_| PullError::Internal("fill table poisoned".into()))?;
            match fills.get(&job.digest) {
                Some(entry) => {
                    entry.urgency.raise();
                    (entry.start.clone(), None)
                }
                None if job.misses.contains(&job.miss_key()) => {
                    // A fill that just failed with "not found" remembered it
                    // before it left the table; a request that looked
                    // before then must not start another.
                    job.metrics.cache("blob", "negative");
                    return Err(UpstreamError::NotFound {
                        upstream: job.source.name().to_owned(),
                        resource: Resource::Blob,
                        code: None,
                    }
                    .into());
                }
                None => {
                    let (rx, reader) = self.start(&mut fills, job);
                    (rx, Some(reader))
                }
            }
        };
        let joined = mine.is_none();
        let start = rx
            .wait_for(|s| !matches!(s, FillStart::Pending))
            .await
            .map_err(|_| PullError::Internal("blob download task ended unexpectedly".into()))?
            .clone();
        match start {
            FillStart::Started(started) => {
                let progress = mine.unwrap_or_else(|| started.progress.subscribe());
                let handle = FillHandle {
                    content: started.content,
                    progress,
                    size: started.size,
                };
                Ok(Joined::Fill {
                    handle,
                    coalesced: joined,
                })
            }
            FillStart::Failed(e) => Err(e),
            FillStart::Stored => Ok(Joined::Stored),
            FillStart::NoRoom(download) => Ok(Joined::Direct(
                download.lock().ok().and_then(|mut d| d.take()),
            )),
            FillStart::Pending => Err(PullError::Internal("blob download did not start".into())),
        }
    }
}

impl FillTable {
    /// A handle on the fill of `digest` running now, if any, once its
    /// download has started; never starts one.
    pub(super) async fn join_running(&self, digest: &Digest) -> Option<FillHandle> {
        let mut rx = self.fills.lock().ok()?.get(digest)?.start.clone();
        let start = rx
            .wait_for(|s| !matches!(s, FillStart::Pending))
            .await
            .ok()?
            .clone();
        match start {
            FillStart::Started(started) => Some(FillHandle {
                content: started.content,
                progress: started.progress.subscribe(),
                size: started.size,
            }),
            _ => None,
        }
    }

    /// The fills running, with their progress.
    pub(super) fn running(&self) -> Vec<RunningFill> {
        let Ok(fills) = self.fills.lock() else {
            return Vec::new();
        };
        fills
            .iter()
            .map(|(digest, entry)| {
                let (received, size) = match &*entry.start.borrow() {
                    FillStart::Started(s) => (s.progress.borrow().written, s.size),
                    _ => (0, None),
                };
                RunningFill {
                    digest: *digest,
                    received,
                    size,
                }
            })
            .collect()
    }

    /// Register and spawn a fill; the caller holds the table's lock.
    /// Returns where it stands and its first reader: the starter reads
    /// from the first moment, so the fill never sees itself abandoned
    /// before it began.
    fn start(
        &self,
        fills: &mut HashMap<Digest, Entry>,
        job: FillJob,
    ) -> (watch::Receiver<FillStart>, watch::Receiver<Progress>) {
        let (tx, rx) = watch::channel(FillStart::Pending);
        let (progress, reader) = watch::channel(Progress {
            written: 0,
            state: ProgressState::Filling,
        });
        fills.insert(
            job.digest,
            Entry {
                start: rx.clone(),
                urgency: job.urgency.clone(),
            },
        );
        let deregister = Deregister {
            fills: Arc::clone(&self.fills),
            digest: job.digest,
        };
        tokio::spawn(async move {
            let _deregister = deregister;
            run(job, tx, progress).await;
        });
        (rx, reader)
    }

    /// Start a prefetch: a fill nobody waits for yet. Nothing happens when
    /// the blob is being fetched already or was just "not found".
    pub(super) fn start_eager(&self, job: FillJob) -> bool {
        let Ok(mut fills) = self.fills.lock() else {
            return false;
        };
        if fills.contains_key(&job.digest) || job.misses.contains(&job.miss_key()) {
            return false;
        }
        drop(self.start(&mut fills, job));
        true
    }
}

/// Take the flight on the blob, or, when another replica downloads it,
/// read it from there: then nothing is held (`None`), the other replica's
/// flight is the one.
async fn board(job: &mut FillJob) -> Option<Flight> {
    let key = flight_key(&job.digest);
    match job.flights.claim(&key).await {
        Claim::Mine(flight) => Some(flight),
        Claim::Elsewhere(node) => match job.peers.clone() {
            Some(peers) => {
                job.source = peers.source(&node, Arc::clone(&job.source));
                None
            }
            None => Some(job.flights.lock(&key).await),
        },
    }
}

/// How long a verified fill waits for another flight on its blob to end
/// before it publishes all the same.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The flight lock's key for a blob.
fn flight_key(digest: &Digest) -> String {
    format!("blob {digest}")
}

/// The flight under which a verified fill may publish, or why it must not
/// (the fence). A fill that still holds its flight publishes. One that
/// lost it (its replica was paused longer than the lease and another took
/// the flight over), or that read another replica's flight, waits for the
/// flight in force to end, then publishes only what the store still lacks:
/// on a shared store the other replica has stored it; on a replica's own
/// disk, this one keeps a copy. A flight in force for longer than
/// [`PUBLISH_WAIT`] (a download that hangs but renews its lease) is waited
/// for no longer: the blob is verified, so publishing it besides is safe.
async fn may_publish(
    job: &FillJob,
    flight: Option<Flight>,
) -> Result<Option<Flight>, &'static str> {
    if let Some(flight) = flight {
        match flight.still_held().await {
            Some(true) | None => return Ok(Some(flight)),
            Some(false) => drop(flight),
        }
    }
    let key = flight_key(&job.digest);
    let flight = tokio::time::timeout(PUBLISH_WAIT, job.flights.lock(&key)).await;
    match job.blobs.lookup(&job.digest).await {
        Ok(Lookup::Hit(_)) => Err("another replica stored it"),
        Ok(Lookup::Miss) | Err(_) => Ok(flight.ok()),
    }
}

async fn run(
    mut job: FillJob,
    start: watch::Sender<FillStart>,
    progress_tx: watch::Sender<Progress>,
) {
    let flight = board(&mut job).await;
    // The blob may have been stored between the request's lookup and this
    // fill's start; then there is nothing to download. A store that cannot
    // say is taken to lack it: the fill's readers get verified bytes even
    // if it cannot take them afterwards.
    match job.blobs.lookup(&job.digest).await {
        Ok(Lookup::Miss) => {}
        Ok(Lookup::Hit(_)) => {
            start.send_replace(FillStart::Stored);
            return;
        }
        Err(e) => job.disk.read_failed(&job.metrics, "blob", &job.digest, &e),
    }
    if flight.is_some()
        && let Some(peers) = job.peers.clone()
        && let Some(node) = peers.holding(&job.digest).await
    {
        // Another replica holds it on its own disk.
        job.source = peers.source(&node, Arc::clone(&job.source));
    }
    let download = match job
        .source
        .fetch(&job.repo, &job.digest, 0, &job.urgency)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            if matches!(e, UpstreamError::NotFound { .. }) {
                // Before the fill leaves the table, so that no request can
                // start another fill in between.
                job.misses
                    .remember(job.miss_key(), job.policy.not_found_ttl);
            }
            start.send_replace(FillStart::Failed(e.into()));
            return;
        }
    };
    // A zero-length answer would be complete before it could be verified.
    if download.size == Some(0) && job.digest != Digest::of(b"") {
        let e = PullError::Unusable {
            upstream: job.source.name().to_owned(),
            detail: format!("empty body for blob {}", job.digest),
        };
        start.send_replace(FillStart::Failed(e));
        return;
    }
    let max = job.policy.fills.max_blob_size;
    if let Some(size) = download.size.filter(|s| *s > max) {
        let e = PullError::Unusable {
            upstream: job.source.name().to_owned(),
            detail: format!(
                "blob {} has {size} bytes, more than max_blob_size ({max})",
                job.digest
            ),
        };
        start.send_replace(FillStart::Failed(e));
        return;
    }
    let begun = match job.blobs.reserve(download.size.unwrap_or(0)).await {
        // A copy of another replica's download: a shared store gets it
        // only if that replica fails to store it (`may_publish`).
        Ok(()) if flight.is_none() => job.blobs.begin_copy(&job.digest, download.size).await,
        Ok(()) => job.blobs.begin(&job.digest, download.size).await,
        Err(e) => Err(e),
    };
    let writer = match begun {
        Ok(writer) => writer,
        Err(e) => {
            if let CacheError::NoRoom(why) = &e {
                tracing::warn!(digest = %job.digest, size = download.size, reason = %why, "no room in the cache; serving without caching");
            } else {
                tracing::error!(error = %e, "cannot begin writing a blob; serving without caching");
                job.disk.write_failed();
            }
            job.metrics.cache_write_failures.inc();
            start.send_replace(FillStart::NoRoom(Arc::new(Mutex::new(Some(download)))));
            return;
        }
    };
    start.send_replace(FillStart::Started(Started {
        content: writer.tail(),
        progress: progress_tx.clone(),
        size: download.size,
    }));
    let labels = UpstreamLabels {
        upstream: job.source.name().to_owned(),
    };
    let eager = job.eager.take();
    match copy(&job, download, writer, &progress_tx, eager).await {
        Ok((writer, proof)) => {
            // Verified: readers may have the last byte now, without waiting
            // for the commit that makes the blob visible to others.
            let written = progress_tx.borrow().written;
            progress_tx.send_replace(Progress {
                written,
                state: ProgressState::Complete,
            });
            let flight = match may_publish(&job, flight).await {
                Ok(flight) => flight,
                Err(why) => {
                    tracing::info!(digest = %job.digest, reason = why, "verified blob served and not stored again");
                    return;
                }
            };
            // The flight is held until the blob is advertised, so that no
            // other replica finds it neither downloading nor held.
            let _flight = flight;
            match writer.finish(proof).await {
                Ok(()) => {
                    tracing::info!(digest = %job.digest, bytes = written, "blob cached");
                    if let Some(peers) = &job.peers {
                        peers.hold(&job.digest).await;
                    }
                }
                Err(e) => {
                    tracing::error!(digest = %job.digest, error = %e, "verified blob could not be committed; not cached");
                    job.disk_write_failed();
                }
            }
        }
        Err(stop) => fail(&job, &progress_tx, &labels, &stop),
    }
}

fn fail(job: &FillJob, progress: &watch::Sender<Progress>, labels: &UpstreamLabels, stop: &Stop) {
    match stop {
        Stop::Failed(e) => {
            if e.is_disk_failure() {
                job.disk_write_failed();
            }
            tracing::error!(digest = %job.digest, error = %e, "blob download failed; nothing cached");
        }
        Stop::Unattended(why) => {
            tracing::warn!(digest = %job.digest, reason = %why, "blob download stopped; nothing cached");
        }
    }
    job.metrics.fill_failures.get_or_create(labels).inc();
    let written = progress.borrow().written;
    progress.send_replace(Progress {
        written,
        state: ProgressState::Failed,
    });
}
