//! Sending one logical request: wait for a slot under the upstream's
//! concurrency cap, pick the healthiest mirror, and on a failure a retry can
//! fix, fail over to the next mirror at once, or back off and try again
//! once every mirror was tried. Each outcome feeds the mirror's health.

use crate::metrics::MirrorLabels;
use crate::upstream::mirror::{self, BreakerState, Verdict};
use crate::upstream::request::Call;
use crate::upstream::{Registry, UpstreamError, retry};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// A 2xx answer and the concurrency slot it holds until dropped.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) response: reqwest::Response,
    pub(super) slot: OwnedSemaphorePermit,
    /// When the attempt that got this answer was sent.
    pub(super) sent_at: Instant,
}

impl Registry {
    async fn slot(&self) -> Result<OwnedSemaphorePermit, UpstreamError> {
        let wait = self.config.resilience.queue_timeout;
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(UpstreamError::Busy {
                upstream: self.name().to_owned(),
                waited: wait,
            }),
        }
    }

    /// Send `call` with retries and mirror failover.
    pub(super) async fn send(&self, call: Call<'_>) -> Result<Answer, UpstreamError> {
        let slot = self.slot().await?;
        let mut tried: Vec<usize> = Vec::new();
        let mut retries_left = self.config.resilience.retries;
        let mut attempt = 0u32;
        loop {
            let i = mirror::pick(&self.mirrors, &tried);
            tried.push(i);
            let m = &self.mirrors[i];
            let started = Instant::now();
            let span = tracing::debug_span!("upstream", mirror = m.label(), attempt);
            let result = tracing::Instrument::instrument(self.attempt(&call, m), span).await;
            let verdict = match &result {
                Err(e) if e.retryable() => Verdict::Failed,
                _ => Verdict::Answered(started.elapsed()),
            };
            if let Some(state) = m.record(verdict) {
                self.breaker_changed(i, state);
            }
            let error = match result {
                Ok(response) => {
                    return Ok(Answer {
                        response,
                        slot,
                        sent_at: started,
                    });
                }
                Err(e) if e.retryable() && retries_left > 0 => e,
                Err(e) => return Err(e),
            };
            retries_left -= 1;
            attempt += 1;
            tracing::warn!(upstream = self.name(), mirror = m.label(), error = %error, "upstream attempt failed; retrying");
            let untried = (0..self.mirrors.len()).any(|j| !tried.contains(&j));
            if !untried {
                let retry_after = match &error {
                    UpstreamError::RateLimited { retry_after, .. } => {
                        retry_after.map(Duration::from_secs)
                    }
                    _ => None,
                };
                let Some(pause) = retry::backoff(attempt - 1, retry_after) else {
                    return Err(error);
                };
                tokio::time::sleep(pause).await;
                tried.clear();
            }
        }
    }

    fn breaker_changed(&self, index: usize, state: BreakerState) {
        let m = &self.mirrors[index];
        match state {
            BreakerState::Open => tracing::warn!(
                upstream = self.name(),
                mirror = m.label(),
                "mirror keeps failing; circuit opened"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(upstream = self.name(), mirror = m.label(), "probing mirror")
            }
            BreakerState::Closed => tracing::info!(
                upstream = self.name(),
                mirror = m.label(),
                "mirror recovered; circuit closed"
            ),
        }
        self.publish_mirror_state(index);
    }

    /// Export a mirror's breaker state (0 closed, 1 open, 2 half-open).
    pub(super) fn publish_mirror_state(&self, index: usize) {
        let m = &self.mirrors[index];
        let value = match m.state() {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        };
        let labels = MirrorLabels {
            upstream: self.name().to_owned(),
            mirror: m.label().to_owned(),
        };
        self.metrics.mirror_state.get_or_create(&labels).set(value);
    }
}
