//! Token buckets per key (a client IP, a user), as the generic cell rate
//! algorithm: one timestamp per key, the time its bucket is next empty.
//! The keys live in shards of bounded size: a shard that fills drops the
//! buckets that are full again (they hold nothing a fresh one would not),
//! and under a flood of distinct keys, everything, so memory stays fixed.
//! A dropped key starts with a full bucket, which errs towards serving.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Shards, each with its own lock.
const SHARDS: usize = 16;
/// Keys tracked at once, over every shard.
const KEYS: usize = 100_000;

/// A rate limit over keys of type `K`.
#[derive(Debug)]
pub struct Limiter<K> {
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// Nanoseconds of credit a full bucket holds (the burst).
    tolerance: u64,
    epoch: Instant,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<K, u64>>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `per_second` requests a second, with up to `burst` more at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let interval = 1_000_000_000 / u64::from(per_second.max(1));
        Self {
            interval,
            tolerance: interval * u64::from(burst),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, HashMap<K, u64>> {
        let i = usize::try_from(self.hasher.hash_one(key)).unwrap_or(0) % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Take one request for `key`: `Err(wait)` when it must wait that long.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let now = self.now();
        let mut shard = self.shard(key);
        let tat = shard.get(key).copied().unwrap_or(0).max(now);
        if tat - now > self.tolerance {
            return Err(Duration::from_nanos(tat - now - self.tolerance));
        }
        if shard.len() >= KEYS / SHARDS && !shard.contains_key(key) {
            shard.retain(|_, next| *next > now);
            if shard.len() >= KEYS / SHARDS {
                shard.clear();
            }
        }
        shard.insert(key.clone(), tat + self.interval);
        Ok(())
    }

    /// Return one request taken for `key` (an attempt that turned out not
    /// to count, such as a login that succeeded).
    pub fn give_back(&self, key: &K) {
        if let Some(tat) = self.shard(key).get_mut(key) {
            *tat = tat.saturating_sub(self.interval);
        }
    }

    /// Whether a request for `key` would pass now, without taking it.
    pub fn peek(&self, key: &K) -> Result<(), Duration> {
        let now = self.now();
        let tat = self.shard(key).get(key).copied().unwrap_or(0).max(now);
        if tat - now > self.tolerance {
            Err(Duration::from_nanos(tat - now - self.tolerance))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{KEYS, Limiter};

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_key() {
        let limiter = Limiter::new(10, 20);
        let passed = (0..100).filter(|_| limiter.take(&1).is_ok()).count();
        assert!((21..=22).contains(&passed), "{passed}");
        let wait = limiter.take(&1).unwrap_err();
        assert!(wait.as_millis() <= 100, "{wait:?}");
        assert!(limiter.take(&2).is_ok(), "another key has its own bucket");
    }

    #[test]
    fn a_flood_of_keys_stays_within_the_bound() {
        let limiter = Limiter::new(1, 0);
        for key in 0..(KEYS * 3) {
            let _ = limiter.take(&key);
        }
        let held: usize = limiter.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= KEYS, "{held}");
    }
}
