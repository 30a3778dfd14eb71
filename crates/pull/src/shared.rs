//! What the requests behind one flight share besides its answer: its
//! failure. A request that waited for another's upstream exchange (a tag,
//! a manifest, a listing, a grant) and finds that exchange failed gets the
//! same failure at once, instead of trying again in turn after it; and no
//! request waits for a flight longer than its upstream's
//! `request_deadline`.

use crate::flight::Flight;
use crate::origin::Origin;
use crate::{PullError, PullService};
use berth_upstream::UpstreamError;
use moka::sync::Cache;
use std::time::Duration;
use tokio::time::Instant;

/// How long a flight's failure is kept for the requests that waited for
/// it (they look within moments of its end; the rest is slack).
const KEPT: Duration = Duration::from_secs(60);
/// Failures kept at most.
const CAPACITY: u64 = 10_000;

/// The latest failure of each flight key, with when it happened.
#[derive(Debug)]
pub(crate) struct Failures {
    recent: Cache<String, (Instant, PullError)>,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            recent: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KEPT)
                .build(),
        }
    }
}

/// A flight lock taken by a request, and the failure of the flight it
/// waited for, if that failed.
#[derive(Debug)]
pub(crate) struct Boarded {
    pub(crate) flight: Flight,
    /// Set when this request waited and the flight before it failed.
    pub(crate) failed_before: Option<PullError>,
}

impl PullService {
    /// Take the flight lock on `key`, waiting no longer than the origin's
    /// `request_deadline`.
    pub(crate) async fn board(&self, origin: &Origin, key: &str) -> Result<Boarded, PullError> {
        self.board_within(origin, key, Duration::ZERO).await
    }

    /// [`PullService::board`], sharing also a failure that ended up to
    /// `window` before this request asked (a refusal worth repeating
    /// without asking upstream again so soon).
    pub(crate) async fn board_within(
        &self,
        origin: &Origin,
        key: &str,
        window: Duration,
    ) -> Result<Boarded, PullError> {
        let now = Instant::now();
        let asked = now.checked_sub(window).unwrap_or(now);
        let limit = origin.upstream.config().resilience.request_deadline;
        let flight = tokio::time::timeout(limit, self.flights.lock(key))
            .await
            .map_err(|_| UpstreamError::Timeout {
                upstream: origin.name().to_owned(),
                detail: format!(
                    "another request's upstream exchange for this did not end within request_deadline ({limit:?})"
                ),
            })?;
        let failed_before = if flight.waited || !window.is_zero() {
            self.failures
                .recent
                .get(key)
                .filter(|(at, _)| *at >= asked)
                .map(|(_, e)| e)
        } else {
            None
        };
        Ok(Boarded {
            flight,
            failed_before,
        })
    }

    /// Note how the flight on `key` ended, while its lock is still held,
    /// so the requests waiting for it share a failure.
    pub(crate) fn landed<T>(&self, key: &str, result: &Result<T, PullError>) {
        if let Err(e) = result {
            self.failures
                .recent
                .insert(key.to_owned(), (Instant::now(), e.clone()));
        }
    }
}
