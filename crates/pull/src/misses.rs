//! Remembered "not found" answers, so a storm of requests for a missing
//! manifest costs one upstream request per `not_found_ttl`. Bounded in
//! bytes.

use berth_oci::{Digest, RepoName};
use moka::sync::Cache;
use std::time::Duration;
use tokio::time::Instant;

/// The remembered-miss key of a blob: upstream, repository and digest
/// (three lines, where a manifest's key, `TagKey::id`, has four).
pub(super) fn blob_key(upstream: &str, repo: &RepoName, digest: &Digest) -> String {
    format!("{upstream}\n{repo}\nblob {digest}")
}

/// Memory for remembered misses (bytes of keys, plus bookkeeping).
const MEMORY: u64 = 4 << 20;
/// What an entry costs besides its key.
const ENTRY_OVERHEAD: usize = 64;

/// Keys that upstream recently answered 404 for, each with its expiry.
#[derive(Debug, Clone)]
pub(super) struct Misses {
    cache: Cache<String, Instant>,
}

impl Default for Misses {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(MEMORY)
                .weigher(|key: &String, _: &Instant| {
                    u32::try_from(key.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }
}

impl Misses {
    /// Whether `key` is a remembered miss.
    pub(super) fn contains(&self, key: &str) -> bool {
        match self.cache.get(key) {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                self.cache.invalidate(key);
                false
            }
            None => false,
        }
    }

    /// Remember `key` as missing for `ttl` (nothing for a zero TTL).
    pub(super) fn remember(&self, key: String, ttl: Duration) {
        if !ttl.is_zero() {
            self.cache.insert(key, Instant::now() + ttl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn misses_expire() {
        let m = Misses::default();
        m.remember("a".into(), Duration::from_secs(30));
        m.remember("b".into(), Duration::ZERO);
        assert!(m.contains("a"));
        assert!(!m.contains("b"));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!m.contains("a"));
    }
}
