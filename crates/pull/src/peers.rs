//! Other replicas as a source of what this one lacks. With a cluster, a
//! fill whose blob another replica is downloading or holds reads it from
//! that replica rather than from upstream, verifying it as it would
//! upstream's bytes; a manifest another replica stored (the shared index
//! knows its type) is read from the replica holding it, checked against
//! its digest, and kept here. What a peer is, and how it is reached, is
//! the cluster's; the engine only asks.

use crate::source::FillSource;
use crate::{ManifestAnswer, Outcome, PullService};
use async_trait::async_trait;
use berth_oci::{Digest, manifest_media_type};
use bytes::Bytes;
use std::fmt::Debug;
use std::sync::Arc;

/// The largest manifest read from a peer, as from an upstream.
const MAX_PEER_MANIFEST: usize = berth_upstream::MAX_MANIFEST_BYTES;

/// The other replicas, as the engine sees them.
#[async_trait]
pub trait Peers: Send + Sync + Debug {
    /// A source reading from the replica at `node`, which holds or is
    /// filling the blob; when that replica fails, `upstream` goes on from
    /// the byte reached.
    fn source(&self, node: &str, upstream: Arc<dyn FillSource>) -> Arc<dyn FillSource>;

    /// Another live replica that holds `digest`, if any.
    async fn holding(&self, digest: &Digest) -> Option<String>;

    /// Tell the others that this replica now holds `digest`.
    async fn hold(&self, digest: &Digest);

    /// The bytes the replica at `node` holds for `digest`, when it sends
    /// at most `limit` of them; `None` on any failure. Unchecked: the
    /// caller verifies them.
    async fn read_small(&self, node: &str, digest: &Digest, limit: usize) -> Option<Bytes>;
}

impl PullService {
    /// The manifest `digest`, known to the shared index as `recorded` but
    /// not stored here, from a replica that holds it: checked against its
    /// digest, stored, and advertised. `None` without peers, or when none
    /// can give the right bytes (then upstream is asked, as before).
    pub(super) async fn manifest_from_peer(
        &self,
        digest: &Digest,
        recorded: &str,
        outcome: Outcome,
    ) -> Option<ManifestAnswer> {
        let peers = self.peers.as_ref()?;
        let node = peers.holding(digest).await?;
        let bytes = peers.read_small(&node, digest, MAX_PEER_MANIFEST).await?;
        if Digest::of(&bytes) != *digest {
            tracing::warn!(%digest, peer = node, "a peer replica sent a manifest that does not match its digest; asking upstream");
            return None;
        }
        let media_type = manifest_media_type(&bytes, Some(recorded))
            .or_else(|_| manifest_media_type(&bytes, None))
            .ok()?;
        match self.blobs.put_small(digest, bytes.clone()).await {
            Ok(()) => peers.hold(digest).await,
            Err(e) => {
                tracing::error!(%digest, error = %e, "manifest could not be stored; served uncached");
                self.metrics.cache_write_failures.inc();
            }
        }
        tracing::info!(%digest, peer = node, "manifest read from a peer replica");
        let hot = berth_cache::HotManifest {
            bytes,
            media_type: media_type.into(),
        };
        self.hot.insert(*digest, hot.clone());
        Some(ManifestAnswer {
            bytes: hot.bytes,
            media_type: media_type.to_owned(),
            digest: *digest,
            outcome,
        })
    }
}
