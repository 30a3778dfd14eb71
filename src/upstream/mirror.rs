//! The base URLs of one upstream and their health: an EWMA of latency and
//! error rate picks the best mirror, and a circuit breaker stops sending to
//! one that keeps failing until a half-open probe shows it is back.

use crate::upstream::auth::AuthState;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failures in a row that open the breaker.
const OPEN_AFTER: u32 = 3;
/// How long an open breaker refuses requests before a probe.
const COOL_DOWN: Duration = Duration::from_secs(30);
/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.3;

/// Breaker state, as exported in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Healthy: requests flow.
    Closed,
    /// Failing: requests go elsewhere until the cool-down ends.
    Open,
    /// Cool-down over: one probe request decides.
    HalfOpen,
}

#[derive(Debug)]
struct Health {
    latency_ms: f64,
    error_rate: f64,
    failures_in_row: u32,
    state: BreakerState,
    open_until: Instant,
    probing: bool,
}

/// One base URL of an upstream, with its own auth state and health.
#[derive(Debug)]
pub(super) struct Mirror {
    pub(super) url: url::Url,
    pub(super) auth: AuthState,
    health: Mutex<Health>,
}

/// The verdict on one attempt, for health accounting.
#[derive(Debug, Clone, Copy)]
pub(super) enum Verdict {
    /// Answered (whatever the status, short of an outage) in this time.
    Answered(Duration),
    /// Down, timed out, 5xx or 429.
    Failed,
}

impl Mirror {
    pub(super) fn new(url: url::Url) -> Self {
        Self {
            url: without_userinfo(url),
            auth: AuthState::default(),
            health: Mutex::new(Health {
                latency_ms: 0.0,
                error_rate: 0.0,
                failures_in_row: 0,
                state: BreakerState::Closed,
                open_until: Instant::now(),
                probing: false,
            }),
        }
    }

    /// The mirror's base URL without a trailing slash, for logs and labels.
    pub(super) fn label(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    pub(super) fn state(&self) -> BreakerState {
        self.health.lock().map_or(BreakerState::Closed, |h| h.state)
    }

    /// Claim a request slot: always while closed; the single probe once
    /// an open breaker has cooled down. False while the breaker refuses.
    fn admit(&self, now: Instant) -> bool {
        let Ok(mut h) = self.health.lock() else {
            return false;
        };
        if score(&h, now).is_none() {
            return false;
        }
        if h.state != BreakerState::Closed {
            h.state = BreakerState::HalfOpen;
            h.probing = true;
        }
        true
    }

    /// Account for one attempt; returns the new state when it changed.
    pub(super) fn record(&self, verdict: Verdict) -> Option<BreakerState> {
        let mut h = self.health.lock().ok()?;
        let before = h.state;
        h.probing = false;
        match verdict {
            Verdict::Answered(took) => {
                let ms = took.as_secs_f64() * 1000.0;
                h.latency_ms = if h.latency_ms == 0.0 {
                    ms
                } else {
                    ALPHA * ms + (1.0 - ALPHA) * h.latency_ms
                };
                h.error_rate *= 1.0 - ALPHA;
                h.failures_in_row = 0;
                h.state = BreakerState::Closed;
            }
            Verdict::Failed => {
                h.error_rate = ALPHA + (1.0 - ALPHA) * h.error_rate;
                h.failures_in_row += 1;
                if before == BreakerState::HalfOpen || h.failures_in_row >= OPEN_AFTER {
                    h.state = BreakerState::Open;
                    h.open_until = Instant::now() + COOL_DOWN;
                }
            }
        }
        (h.state != before).then_some(h.state)
    }
}

/// `url` without `user:password@`, for requests, labels and logs. The
/// configuration refuses credentials in URLs; this keeps any that slip
/// through out of metrics and logs.
fn without_userinfo(mut url: url::Url) -> url::Url {
    // Only fails for URLs that cannot carry credentials at all.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// The best mirror to try next: one not tried yet if any, then the lowest
/// score, then list order. When every breaker refuses, the one that opened
/// first is used anyway: with nothing to fail over to, refusing would only
/// turn a possible answer into a certain error.
pub(super) fn pick(mirrors: &[Mirror], tried: &[usize]) -> usize {
    let now = Instant::now();
    let admissible = mirrors
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let s = m.health.lock().ok().and_then(|h| score(&h, now))?;
            Some((tried.contains(&i), s, i))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    if let Some((_, _, i)) = admissible
        && mirrors[i].admit(now)
    {
        return i;
    }
    let reopens = |m: &Mirror| m.health.lock().map_or(now, |h| h.open_until);
    (0..mirrors.len())
        .min_by_key(|&i| (tried.contains(&i), reopens(&mirrors[i])))
        .unwrap_or(0)
}

/// Selection score (lower is better), or `None` while the breaker refuses.
fn score(h: &Health, now: Instant) -> Option<f64> {
    match h.state {
        BreakerState::Closed => Some(h.latency_ms * (1.0 + 4.0 * h.error_rate)),
        BreakerState::Open if now >= h.open_until => Some(f64::MAX / 2.0),
        BreakerState::HalfOpen if !h.probing => Some(f64::MAX / 2.0),
        BreakerState::Open | BreakerState::HalfOpen => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors(n: usize) -> Vec<Mirror> {
        (0..n)
            .map(|i| Mirror::new(url::Url::parse(&format!("http://m{i}.test")).unwrap()))
            .collect()
    }

    #[test]
    fn labels_carry_no_credentials() {
        let m = Mirror::new(url::Url::parse("https://user:secret@m.test:8443/base").unwrap());
        assert_eq!(m.label(), "https://m.test:8443/base");
        assert_eq!(m.url.password(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn prefers_list_order_then_health_and_opens_the_breaker() {
        let m = mirrors(2);
        assert_eq!(pick(&m, &[]), 0);
        m[0].record(Verdict::Answered(Duration::from_millis(100)));
        m[1].record(Verdict::Answered(Duration::from_millis(10)));
        assert_eq!(pick(&m, &[]), 1, "the faster mirror wins");
        assert_eq!(pick(&m, &[1]), 0, "failover skips what was tried");
        for _ in 0..OPEN_AFTER {
            m[1].record(Verdict::Failed);
        }
        assert_eq!(m[1].state(), BreakerState::Open);
        assert_eq!(pick(&m, &[]), 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..OPEN_AFTER {
            m[0].record(Verdict::Failed);
        }
        assert_eq!(
            pick(&m, &[]),
            1,
            "every breaker open: the one that opened first"
        );
        tokio::time::advance(COOL_DOWN + Duration::from_secs(1)).await;
        let probe = pick(&m, &[]);
        assert_eq!(m[probe].state(), BreakerState::HalfOpen);
        let other = pick(&m, &[probe]);
        assert_ne!(other, probe, "one probe per mirror");
        assert_eq!(
            m[probe].record(Verdict::Answered(Duration::from_millis(5))),
            Some(BreakerState::Closed)
        );
        assert_eq!(m[other].record(Verdict::Failed), Some(BreakerState::Open));
    }
}
