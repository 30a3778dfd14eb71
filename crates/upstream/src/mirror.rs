//! The base URLs of one upstream and their health: an EWMA of latency and
//! error rate picks the best mirror, and a circuit breaker stops sending to
//! one that keeps failing, or that stayed silent for a whole request
//! deadline, until a single half-open probe shows it is back. While every
//! breaker refuses, no mirror is picked: the request fails at once.

use crate::auth::AuthState;
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

/// One mirror's health as `/stats` and `/routes` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorHealth {
    /// Its base URL (never with credentials).
    pub url: String,
    /// The circuit breaker.
    pub state: BreakerState,
    /// Smoothed time to response headers, in milliseconds.
    pub latency_ms: f64,
    /// Smoothed share of attempts that failed (0 to 1).
    pub error_rate: f64,
}

impl BreakerState {
    /// Lower-case name: `closed`, `open`, `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
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
    /// Answered 429: alive, but asking berth to slow down. Counts against
    /// the mirror's score, not towards opening its breaker.
    Throttled,
    /// Down, timed out or 5xx.
    Failed,
    /// No answer at all within the whole request deadline: opens the
    /// breaker at once, so the next clients do not wait as long again.
    Unresponsive,
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

    /// What operators see of this mirror.
    pub(super) fn report(&self) -> MirrorHealth {
        let (state, latency_ms, error_rate) = self
            .health
            .lock()
            .map_or((BreakerState::Closed, 0.0, 0.0), |h| {
                (h.state, h.latency_ms, h.error_rate)
            });
        MirrorHealth {
            url: self.label().to_owned(),
            state,
            latency_ms,
            error_rate,
        }
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
        let failed = |h: &mut Health| {
            h.error_rate = ALPHA + (1.0 - ALPHA) * h.error_rate;
            h.failures_in_row += 1;
        };
        let open = |h: &mut Health| {
            h.state = BreakerState::Open;
            h.open_until = Instant::now() + COOL_DOWN;
        };
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
            Verdict::Throttled => {
                h.error_rate = ALPHA + (1.0 - ALPHA) * h.error_rate;
                h.state = BreakerState::Closed;
            }
            Verdict::Failed => {
                failed(&mut h);
                if before == BreakerState::HalfOpen || h.failures_in_row >= OPEN_AFTER {
                    open(&mut h);
                }
            }
            Verdict::Unresponsive => {
                failed(&mut h);
                open(&mut h);
            }
        }
        (h.state != before).then_some(h.state)
    }

    /// An attempt ended without a verdict (its client left): free the
    /// probe slot, so the next request probes instead of the breaker
    /// refusing for good.
    pub(super) fn abandon(&self) {
        if let Ok(mut h) = self.health.lock() {
            h.probing = false;
        }
    }
}

/// How long until some mirror may be tried again while every breaker
/// refuses: the earliest end of a cool-down, or 1 s while a probe is out.
pub(super) fn next_probe_in(mirrors: &[Mirror]) -> Duration {
    let now = Instant::now();
    mirrors
        .iter()
        .filter_map(|m| {
            let h = m.health.lock().ok()?;
            Some(match h.state {
                BreakerState::Open => h.open_until.saturating_duration_since(now),
                _ => Duration::from_secs(1),
            })
        })
        .min()
        .unwrap_or(COOL_DOWN)
        .max(Duration::from_secs(1))
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
/// score, then list order. `None` while every breaker refuses: the mirrors
/// are known to be down, and waiting on them again would only make the
/// client wait for a certain error.
pub(super) fn pick(mirrors: &[Mirror], tried: &[usize]) -> Option<usize> {
    let now = Instant::now();
    let mut admissible: Vec<(bool, f64, usize)> = mirrors
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let s = m.health.lock().ok().and_then(|h| score(&h, now))?;
            Some((tried.contains(&i), s, i))
        })
        .collect();
    admissible.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    // Another request may claim a probe between scoring and admitting.
    admissible
        .into_iter()
        .map(|(_, _, i)| i)
        .find(|&i| mirrors[i].admit(now))
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
        assert_eq!(pick(&m, &[]), Some(0));
        m[0].record(Verdict::Answered(Duration::from_millis(100)));
        m[1].record(Verdict::Answered(Duration::from_millis(10)));
        assert_eq!(pick(&m, &[]), Some(1), "the faster mirror wins");
        assert_eq!(pick(&m, &[1]), Some(0), "failover skips what was tried");
        for _ in 0..OPEN_AFTER {
            m[1].record(Verdict::Failed);
        }
        assert_eq!(m[1].state(), BreakerState::Open);
        assert_eq!(pick(&m, &[]), Some(0));
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..OPEN_AFTER {
            m[0].record(Verdict::Failed);
        }
        assert_eq!(pick(&m, &[]), None, "every breaker open: nothing to try");
        assert_eq!(next_probe_in(&m), COOL_DOWN - Duration::from_secs(1));
        tokio::time::advance(COOL_DOWN + Duration::from_secs(1)).await;
        let probe = pick(&m, &[]).unwrap();
        assert_eq!(m[probe].state(), BreakerState::HalfOpen);
        let other = pick(&m, &[probe]).unwrap();
        assert_ne!(other, probe, "one probe per mirror");
        assert_eq!(pick(&m, &[]), None, "both probes are out");
        assert_eq!(
            m[probe].record(Verdict::Answered(Duration::from_millis(5))),
            Some(BreakerState::Closed)
        );
        assert_eq!(m[other].record(Verdict::Failed), Some(BreakerState::Open));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_opens_at_once_and_a_single_probe_decides() {
        let m = mirrors(1);
        assert_eq!(m[0].record(Verdict::Unresponsive), Some(BreakerState::Open));
        assert_eq!(pick(&m, &[]), None);
        tokio::time::advance(COOL_DOWN).await;
        assert_eq!(pick(&m, &[]), Some(0), "the probe");
        assert_eq!(pick(&m, &[]), None, "one probe at a time");
        // The probe's client left: the next request probes instead.
        m[0].abandon();
        assert_eq!(pick(&m, &[]), Some(0));
        assert_eq!(m[0].record(Verdict::Failed), Some(BreakerState::Open));
        assert_eq!(pick(&m, &[]), None);
        tokio::time::advance(COOL_DOWN).await;
        assert_eq!(pick(&m, &[]), Some(0));
        assert_eq!(
            m[0].record(Verdict::Answered(Duration::from_millis(3))),
            Some(BreakerState::Closed)
        );
        assert_eq!(pick(&m, &[]), Some(0));
        assert_eq!(pick(&m, &[]), Some(0), "closed: no probe limit");
    }

    #[test]
    fn rate_limits_do_not_open_the_breaker() {
        let m = mirrors(1);
        for _ in 0..OPEN_AFTER * 2 {
            m[0].record(Verdict::Throttled);
        }
        assert_eq!(m[0].state(), BreakerState::Closed);
    }
}
