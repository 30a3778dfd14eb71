//! Other replicas as a blob's source. With a cluster, a fill whose blob
//! another replica is downloading or holds reads it from that replica
//! rather than from upstream, verifying it as it would upstream's bytes.
//! What a peer is, and how it is reached, is the cluster's; the engine
//! only asks.

use crate::source::FillSource;
use async_trait::async_trait;
use berth_oci::Digest;
use std::fmt::Debug;
use std::sync::Arc;

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
}
