//! Backoff between attempts: exponential with full jitter, capped, and
//! bounded by what an upstream asked for in `Retry-After`.

use std::time::Duration;

/// First backoff ceiling.
const BASE: Duration = Duration::from_millis(200);
/// Largest backoff ceiling.
const CAP: Duration = Duration::from_secs(5);

/// How long to wait before attempt `attempt + 1` (attempt 0 is the first
/// try): a uniformly random time up to `min(CAP, BASE * 2^attempt)`, or
/// what upstream asked for when that is longer. `None` when upstream asked
/// for more than `CAP`: retrying sooner would be rude and later too slow.
pub(super) fn backoff(attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
    if let Some(asked) = retry_after {
        return (asked <= CAP).then_some(asked);
    }
    let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    Some(ceiling.mul_f64(fastrand::f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_within_the_ceiling() {
        for attempt in 0..8 {
            let ceiling = BASE.saturating_mul(1 << attempt).min(CAP);
            for _ in 0..50 {
                assert!(backoff(attempt, None).unwrap() <= ceiling);
            }
        }
        assert_eq!(
            backoff(0, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(backoff(0, Some(Duration::from_secs(60))), None);
    }
}
