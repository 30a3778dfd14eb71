//! Hot objects in memory, each LRU bounded by total bytes: the bytes and
//! media type of recently served manifests, and the bytes of recently
//! served small blobs (image configs, tiny layers), so that a request for
//! either by digest is answered without touching the disk.

use crate::oci::Digest;
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

/// A byte-bounded LRU of manifests by digest.
#[derive(Debug, Clone)]
pub struct HotManifests {
    cache: Cache<Digest, HotManifest>,
}

impl HotManifests {
    /// A cache holding at most `max_bytes` of manifest bytes.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Digest, m: &HotManifest| {
                u32::try_from(m.bytes.len() + m.media_type.len()).unwrap_or(u32::MAX)
            })
            .build();
        Self { cache }
    }

    /// The manifest for `digest`, if hot.
    pub fn get(&self, digest: &Digest) -> Option<HotManifest> {
        self.cache.get(digest)
    }

    /// Remember a manifest whose bytes hash to `digest`.
    pub fn insert(&self, digest: Digest, manifest: HotManifest) {
        self.cache.insert(digest, manifest);
    }
}

/// A byte-bounded LRU of small committed blobs by digest.
#[derive(Debug, Clone)]
pub struct HotBlobs {
    cache: Cache<Digest, Bytes>,
}

impl HotBlobs {
    /// A cache holding at most `max_bytes` of blob bytes.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Digest, b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
            .build();
        Self { cache }
    }

    /// The bytes of `digest`, if hot.
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.cache.get(digest)
    }

    /// Remember a committed blob's bytes.
    pub fn insert(&self, digest: Digest, bytes: Bytes) {
        self.cache.insert(digest, bytes);
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
        let last = Bytes::from(vec![9u8; 300]);
        assert!(hot.get(&Digest::of(&last)).is_some() || hot.cache.entry_count() > 0);
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
