//! Limits kept over several replicas. A [`Bucket`] is one rate limit
//! (per client IP, per user, on failed logins): with [`FleetBuckets`] (a
//! cluster's shared counters) it is taken there, so that a client
//! spreading its requests over the replicas gets the allowance it would
//! get from one; when the fleet's counters cannot answer, or without a
//! cluster, the replica's own [`Limiter`] decides.

use crate::Limiter;
use async_trait::async_trait;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::time::Duration;

/// Token buckets shared by the replicas of a cluster.
#[async_trait]
pub trait FleetBuckets: Send + Sync + Debug {
    /// Take one from the bucket `key` (`per_second`, with `burst` more at
    /// once): `Some(Err(wait))` when it must wait that long, `None` when
    /// the shared counters cannot say now.
    async fn take(&self, key: &str, per_second: u32, burst: u32) -> Option<Result<(), Duration>>;

    /// Return one taken from `key`, which had `per_second`.
    async fn give_back(&self, key: &str, per_second: u32);
}

/// One rate limit, over keys of type `K`.
#[derive(Debug)]
pub(crate) struct Bucket<K> {
    /// What the limit counts, in the shared key (`ip`, `user`, `login`).
    kind: &'static str,
    per_second: u32,
    burst: u32,
    local: Limiter<K>,
}

impl<K: Hash + Eq + Clone + Display> Bucket<K> {
    pub(crate) fn new(kind: &'static str, per_second: u32, burst: u32) -> Self {
        Self {
            kind,
            per_second,
            burst,
            local: Limiter::new(per_second, burst),
        }
    }

    fn shared_key(&self, key: &K) -> String {
        format!("{}:{key}", self.kind)
    }

    /// Take one request for `key`: `Err(wait)` when it must wait.
    pub(crate) async fn take(
        &self,
        fleet: Option<&dyn FleetBuckets>,
        key: &K,
    ) -> Result<(), Duration> {
        if let Some(fleet) = fleet
            && let Some(verdict) = fleet
                .take(&self.shared_key(key), self.per_second, self.burst)
                .await
        {
            return verdict;
        }
        self.local.take(key)
    }

    /// Return one request taken for `key`.
    pub(crate) async fn give_back(&self, fleet: Option<&dyn FleetBuckets>, key: &K) {
        if let Some(fleet) = fleet {
            fleet
                .give_back(&self.shared_key(key), self.per_second)
                .await;
        }
        self.local.give_back(key);
    }
}
