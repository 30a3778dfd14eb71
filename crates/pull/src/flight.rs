//! Single flight: one upstream request per key however many clients ask,
//! behind a lock trait. [`LocalFlights`] serves one process; a distributed
//! lock (several replicas over one store) implements the same trait.
//!
//! Manifests take the lock for their key around the upstream request, so
//! concurrent misses wait and then read the cache. A blob fill takes the
//! lock for its digest before it re-checks the store and downloads; within
//! one process the fill table already shares each download, so the lock
//! only matters across processes.
//!
//! A lock that can be lost while held (a lease that expired because its
//! holder was paused) says so through [`Flight::still_held`]: a fill asks
//! it just before it publishes, and a holder that lost its flight leaves
//! publishing to the one that took it over (the fence).

use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::OwnedMutexGuard;

/// A held flight lock; dropping it lets the next waiter in.
#[derive(Debug)]
pub struct Flight {
    /// Whether someone else held the lock first: this request waited for
    /// their flight (it was coalesced with it).
    pub waited: bool,
    held: Box<dyn Hold>,
}

/// What keeps a flight lock held until it is dropped.
#[async_trait]
pub trait Hold: Debug + Send + Sync {
    /// Whether the lock is still this holder's: `Some(false)` when it was
    /// lost (and may be another's now), `None` when that cannot be known
    /// at the moment. A lock that cannot be lost keeps the default.
    async fn still_held(&self) -> Option<bool> {
        Some(true)
    }
}

impl Flight {
    /// A lock held by `hold` until it is dropped; `waited`: someone held
    /// it first.
    pub fn held(waited: bool, hold: Box<dyn Hold>) -> Self {
        Self { waited, held: hold }
    }

    /// Whether this flight is still the lock's holder ([`Hold::still_held`]).
    pub async fn still_held(&self) -> Option<bool> {
        self.held.still_held().await
    }
}

/// What [`FlightLock::claim`] got.
#[derive(Debug)]
pub enum Claim {
    /// The lock: this process does the work.
    Mine(Flight),
    /// Another replica holds it, reached at this URL: its work in
    /// progress can be read from there.
    Elsewhere(String),
}

/// Exclusive locks by key.
#[async_trait]
pub trait FlightLock: Send + Sync + Debug {
    /// Wait for the lock on `key`.
    async fn lock(&self, key: &str) -> Flight;

    /// Take the lock on `key`, or say which other replica holds it rather
    /// than wait. Within one process there is no other replica.
    async fn claim(&self, key: &str) -> Claim {
        Claim::Mine(self.lock(key).await)
    }
}

type LockMap = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// Flight locks within this process. Entries disappear when nobody holds
/// or waits for them.
#[derive(Debug, Default)]
pub struct LocalFlights {
    locks: LockMap,
}

/// Holds the lock for one key; releases and tidies up on drop.
#[derive(Debug)]
struct LocalHold {
    locks: LockMap,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

#[async_trait]
impl FlightLock for LocalFlights {
    async fn lock(&self, key: &str) -> Flight {
        let mutex = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.to_owned())
                .or_default(),
        );
        let (guard, waited) = match Arc::clone(&mutex).try_lock_owned() {
            Ok(g) => (g, false),
            Err(_) => (mutex.lock_owned().await, true),
        };
        let hold = LocalHold {
            locks: Arc::clone(&self.locks),
            key: key.to_owned(),
            guard: Some(guard),
        };
        Flight::held(waited, Box::new(hold))
    }
}

impl Hold for LocalHold {}

impl Drop for LocalHold {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_locker_waits_and_map_is_tidied() {
        let locks = Arc::new(LocalFlights::default());
        let first = locks.lock("a").await;
        assert!(!first.waited);
        let l2 = Arc::clone(&locks);
        let waiter = tokio::spawn(async move { l2.lock("a").await.waited });
        tokio::task::yield_now().await;
        assert!(!locks.lock("b").await.waited, "other keys are free");
        drop(first);
        assert!(waiter.await.unwrap());
        assert!(locks.locks.lock().unwrap().is_empty());
    }
}
