//! Async locks keyed by string, so that concurrent misses for the same
//! manifest make one upstream request while others wait and then read the
//! cache. Entries disappear when nobody holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

#[derive(Debug, Default)]
pub(super) struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the lock for one key; releases and tidies up on drop.
#[derive(Debug)]
pub(super) struct KeyGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Wait for the lock on `key`. The flag says whether someone else held
    /// it first (this request was coalesced with theirs).
    pub(super) async fn lock(&self, key: &str) -> (KeyGuard<'_>, bool) {
        let mutex = match self.locks.lock() {
            Ok(mut map) => Arc::clone(map.entry(key.to_owned()).or_default()),
            Err(_) => Arc::default(),
        };
        let (guard, waited) = match Arc::clone(&mutex).try_lock_owned() {
            Ok(g) => (g, false),
            Err(_) => (mutex.lock_owned().await, true),
        };
        let key_guard = KeyGuard {
            owner: self,
            key: key.to_owned(),
            guard: Some(guard),
        };
        (key_guard, waited)
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Ok(mut map) = self.owner.locks.lock()
            && map
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
        let locks = Arc::new(KeyedLocks::default());
        let (g, waited) = locks.lock("a").await;
        assert!(!waited);
        let l2 = Arc::clone(&locks);
        let waiter = tokio::spawn(async move { l2.lock("a").await.1 });
        tokio::task::yield_now().await;
        drop(g);
        assert!(waiter.await.unwrap());
        assert!(locks.locks.lock().unwrap().is_empty());
    }
}
