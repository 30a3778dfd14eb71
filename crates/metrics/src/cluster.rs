//! Cluster metrics: whether Redis answers, what coordinating through it
//! cost or saved, and the bytes replicas streamed to each other.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `berth_cluster_events`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterEventLabels {
    /// `redis_lost`, `redis_back`, `redis_failed` (one command failed),
    /// `lease_taken`, `lease_waited`, `lease_lost`, `slot_waited` (an
    /// upstream request waited for the fleet's `max_concurrent`),
    /// `peer_fill`, `peer_failed`, `peer_refused`.
    pub event: &'static str,
}

/// Cluster metrics.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// 1 while Redis answers, 0 while it does not (then coordination is
    /// local to each replica).
    pub redis_up: Gauge,
    /// Coordination events.
    pub events: Family<ClusterEventLabels, Counter>,
    /// Bytes this replica read from its peers.
    pub peer_bytes_in: Counter,
    /// Bytes this replica served to its peers.
    pub peer_bytes_out: Counter,
}

impl ClusterMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "cluster_redis_up",
            "1 while Redis answers; 0 while coordination is local to this replica",
            m.redis_up.clone(),
        );
        registry.register(
            "cluster_events",
            "Cluster coordination events: Redis lost and back, leases taken, waited for and lost, peer fills",
            m.events.clone(),
        );
        registry.register(
            "cluster_peer_bytes_in",
            "Blob bytes read from other replicas",
            m.peer_bytes_in.clone(),
        );
        registry.register(
            "cluster_peer_bytes_out",
            "Blob bytes served to other replicas",
            m.peer_bytes_out.clone(),
        );
        m
    }

    /// Count one event.
    pub fn event(&self, event: &'static str) {
        self.events
            .get_or_create(&ClusterEventLabels { event })
            .inc();
    }
}
