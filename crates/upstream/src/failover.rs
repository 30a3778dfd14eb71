//! Sending one logical request: wait for a slot under the upstream's
//! concurrency cap, pick the healthiest mirror, and on a failure a retry can
//! fix, fail over to the next mirror at once, or back off and try again
//! once every mirror was tried, all within `request_deadline`. Each outcome
//! feeds the mirror's health; while every breaker is open the request fails
//! at once with a circuit-open error.

use crate::mirror::{self, BreakerState, Verdict};
use crate::request::Call;
use crate::{Slot, Upstream, UpstreamError, Urgency, retry};
use berth_metrics::MirrorLabels;
use std::time::Duration;
use tokio::time::Instant;

/// An attempt on a mirror that is still running. If the request is
/// abandoned before it ends (its client left), dropping this frees the
/// mirror's probe slot.
struct InFlight<'a> {
    mirror: &'a mirror::Mirror,
    ended: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.mirror.abandon();
        }
    }
}

/// A 2xx answer and the concurrency slot it holds until dropped.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) response: reqwest::Response,
    pub(super) slot: Slot,
    /// When the attempt that got this answer was sent.
    pub(super) sent_at: Instant,
}

impl Upstream {
    /// A request slot within `queue_timeout`, and in a cluster one of the
    /// fleet's within `queue_timeout` more. A prefetch waits for this
    /// replica's slot without a limit until a client waits for it too;
    /// from then on, it waits as long as a client's request would.
    async fn slot(&self, urgency: Option<&Urgency>) -> Result<Slot, UpstreamError> {
        let mut slot = self.own_slot(urgency).await?;
        if let Some(fleet) = self.fleet.get() {
            let wait = self.config.resilience.queue_timeout;
            let max = self.config.resilience.max_concurrent;
            slot.fleet = tokio::time::timeout(wait, fleet.acquire(self.name(), max))
                .await
                .map_err(|_| UpstreamError::Busy {
                    upstream: self.name().to_owned(),
                    waited: wait,
                })?;
        }
        Ok(slot)
    }

    /// One of this replica's request slots (see [`Upstream::slot`]).
    async fn own_slot(&self, urgency: Option<&Urgency>) -> Result<Slot, UpstreamError> {
        let wait = self.config.resilience.queue_timeout;
        let busy = || UpstreamError::Busy {
            upstream: self.name().to_owned(),
            waited: wait,
        };
        let Some(urgency) = urgency else {
            let now = Urgency::now();
            return tokio::time::timeout(wait, self.slots.acquire(&now))
                .await
                .map_err(|_| busy());
        };
        let acquire = self.slots.acquire(urgency);
        tokio::pin!(acquire);
        let mut raised = urgency.watch();
        if !urgency.is_urgent() {
            tokio::select! {
                slot = &mut acquire => return Ok(slot),
                _ = raised.wait_for(|urgent| *urgent) => {}
            }
        }
        tokio::time::timeout(wait, acquire)
            .await
            .map_err(|_| busy())
    }

    /// Send `call` with retries and mirror failover, within
    /// `request_deadline` once a slot is held. While every mirror's breaker
    /// refuses, fail at once with a circuit-open error.
    pub(super) async fn send(&self, call: Call<'_>) -> Result<Answer, UpstreamError> {
        let sent = self.send_with_failover(call).await;
        if let Err(e) = &sent {
            self.metrics
                .upstream
                .errors
                .get_or_create(&berth_metrics::ErrorLabels {
                    upstream: self.name().to_owned(),
                    error: e.kind(),
                })
                .inc();
        }
        sent
    }

    async fn send_with_failover(&self, call: Call<'_>) -> Result<Answer, UpstreamError> {
        let slot = self.slot(call.urgency).await?;
        let limit = self.config.resilience.request_deadline;
        let deadline = Instant::now() + limit;
        let mut tried: Vec<usize> = Vec::new();
        let mut retries_left = self.config.resilience.retries;
        let mut attempt = 0u32;
        let mut last_error = None;
        loop {
            let Some(i) = mirror::pick(&self.mirrors, &tried) else {
                return Err(last_error.unwrap_or_else(|| self.circuit_open()));
            };
            tried.push(i);
            let m = &self.mirrors[i];
            let started = Instant::now();
            let span = tracing::debug_span!("upstream", mirror = m.label(), attempt);
            let mut in_flight = InFlight {
                mirror: m,
                ended: false,
            };
            let attempt_result = tokio::time::timeout_at(
                deadline,
                tracing::Instrument::instrument(self.attempt(&call, m), span),
            )
            .await;
            in_flight.ended = true;
            let Ok(result) = attempt_result else {
                self.metrics
                    .upstream_request(self.name(), call.kind.as_str(), 0);
                self.record(i, Verdict::Unresponsive);
                return Err(UpstreamError::Timeout {
                    upstream: self.name().to_owned(),
                    detail: format!("no answer within request_deadline ({limit:?})"),
                });
            };
            let verdict = match &result {
                Err(UpstreamError::RateLimited { .. }) => Verdict::Throttled,
                Err(e) if e.retryable() => Verdict::Failed,
                _ => Verdict::Answered(started.elapsed()),
            };
            self.record(i, verdict);
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
                if Instant::now() + pause >= deadline {
                    return Err(error);
                }
                tokio::time::sleep(pause).await;
                tried.clear();
            }
            last_error = Some(error);
        }
    }

    /// Account for an attempt on mirror `index` and report breaker changes.
    fn record(&self, index: usize, verdict: Verdict) {
        if let Some(state) = self.mirrors[index].record(verdict) {
            self.breaker_changed(index, state);
        }
    }

    /// The answer while every mirror's breaker refuses.
    fn circuit_open(&self) -> UpstreamError {
        let wait = mirror::next_probe_in(&self.mirrors);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        UpstreamError::Unreachable {
            upstream: self.name().to_owned(),
            detail: format!(
                "not asked: every mirror's circuit is open after repeated failures; next probe in {secs} s"
            ),
            circuit_open_for: Some(secs),
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
