//! Token buckets per key (a client IP, a user), as the generic cell rate
//! algorithm: one timestamp per key, the time its bucket is next empty.
//! The keys live in a bounded cache, so a flood of distinct addresses
//! costs a fixed amount of memory; a key pushed out starts with a full
//! bucket, which errs towards serving.

use moka::sync::Cache;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keys tracked at once.
const KEYS: u64 = 100_000;

/// A rate limit over keys of type `K`.
#[derive(Debug)]
pub struct Limiter<K: Hash + Eq + Send + Sync + 'static> {
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// Nanoseconds of credit a full bucket holds (the burst).
    tolerance: u64,
    epoch: Instant,
    buckets: Cache<K, Arc<AtomicU64>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Limiter<K> {
    /// `per_second` requests a second, with up to `burst` more at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let interval = 1_000_000_000 / u64::from(per_second.max(1));
        let idle =
            Duration::from_nanos(interval * (u64::from(burst) + 1)).max(Duration::from_secs(1));
        Self {
            interval,
            tolerance: interval * u64::from(burst),
            epoch: Instant::now(),
            buckets: Cache::builder()
                .max_capacity(KEYS)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// Whether a request for `key` would pass now, without taking it.
    pub fn peek(&self, key: &K) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let tat = self
            .buckets
            .get(key)
            .map_or(0, |b| b.load(Ordering::Relaxed))
            .max(now);
        if tat - now > self.tolerance {
            Err(Duration::from_nanos(tat - now - self.tolerance))
        } else {
            Ok(())
        }
    }

    /// Take one request for `key`: `Err(wait)` when it must wait that long.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let bucket = self
            .buckets
            .get_with_by_ref(key, || Arc::new(AtomicU64::new(0)));
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let tat = current.max(now);
            if tat - now > self.tolerance {
                return Err(Duration::from_nanos(tat - now - self.tolerance));
            }
            match bucket.compare_exchange_weak(
                current,
                tat + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Limiter;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_key() {
        let limiter = Limiter::new(10, 20);
        let passed = (0..100).filter(|_| limiter.take(&1).is_ok()).count();
        assert!((21..=22).contains(&passed), "{passed}");
        let wait = limiter.take(&1).unwrap_err();
        assert!(wait.as_millis() <= 100, "{wait:?}");
        assert!(limiter.take(&2).is_ok(), "another key has its own bucket");
    }
}
