//! Hot objects in memory, each LRU bounded by total bytes: the bytes and
//! media type of recently served manifests, and the bytes of recently
//! served small blobs (image configs, tiny layers), so that a request for
//! either by digest is answered without touching the disk.

use berth_oci::Digest;
use bytes::Bytes;
use moka::sync::Cache;
use std::sync::Arc;

/// A cached manifest: exact bytes and upstream media type.
#[derive(Debug, Clone)]
pub struct HotManifest {
    /// Exact bytes.
    pub bytes: Bytes,
    /// Media type as upstream sent it.
    pub media_type: Arc<str>,
}

/// What an entry costs in memory, for the byte bound.
pub trait Weighed {
    /// Bytes held.
    fn weight(&self) -> usize;
}

impl Weighed for HotManifest {
    fn weight(&self) -> usize {
        self.bytes.len() + self.media_type.len()
    }
}

impl Weighed for Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

/// A byte-bounded LRU of objects by digest.
#[derive(Debug, Clone)]
pub struct HotCache<V: Weighed + Clone + Send + Sync + 'static> {
    cache: Cache<Digest, V>,
}

/// Manifests by digest.
pub type HotManifests = HotCache<HotManifest>;
/// Small committed blobs by digest.
pub type HotBlobs = HotCache<Bytes>;

impl<V: Weighed + Clone + Send + Sync + 'static> HotCache<V> {
    /// A cache holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Digest, v: &V| u32::try_from(v.weight()).unwrap_or(u32::MAX))
            .build();
        Self { cache }
    }

    /// The entry for `digest`, if hot.
    pub fn get(&self, digest: &Digest) -> Option<V> {
        self.cache.get(digest)
    }

    /// Forget `digest` (the store removed it).
    pub fn remove(&self, digest: &Digest) {
        self.cache.invalidate(digest);
    }

    /// Remember an object whose bytes hash to `digest`.
    pub fn insert(&self, digest: Digest, value: V) {
        self.cache.insert(digest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_by_bytes() {
        let hot = HotManifests::new(1000);
        for i in 0..10u8 {
            let bytes = Bytes::from(vec![i; 300]);
            hot.insert(
                Digest::of(&bytes),
                HotManifest {
                    bytes,
                    media_type: "t".into(),
                },
            );
        }
        hot.cache.run_pending_tasks();
        assert!(hot.cache.weighted_size() <= 1000);
        // Which entries stay is the admission policy's choice; how many
        // fit is the byte bound's.
        let kept = (0..10u8)
            .filter(|i| hot.get(&Digest::of(&vec![*i; 300])).is_some())
            .count();
        assert!(
            (1..=3).contains(&kept),
            "{kept} 300-byte entries kept in a 1000-byte cache"
        );
    }

    #[test]
    fn hot_blobs_are_bounded_by_bytes() {
        let hot = HotBlobs::new(1000);
        let mut digests = Vec::new();
        for i in 0..10u8 {
            let bytes = Bytes::from(vec![i; 300]);
            digests.push(Digest::of(&bytes));
            hot.insert(Digest::of(&bytes), bytes);
        }
        hot.cache.run_pending_tasks();
        assert!(hot.cache.weighted_size() <= 1000);
        let kept: Vec<Bytes> = digests.iter().filter_map(|d| hot.get(d)).collect();
        assert!(!kept.is_empty() && kept.len() <= 3, "kept {}", kept.len());
        for bytes in kept {
            assert!(digests.contains(&Digest::of(&bytes)));
        }
    }
}
