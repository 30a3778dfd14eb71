//! Joining the other replicas when `[cluster]` is configured: the index
//! shared through Redis over this replica's own, single flight by leases,
//! the rate limits counted over the fleet,
//! and the other replicas as a blob's source (their peer endpoint, which
//! this replica serves too). Without `[cluster]`, all of it stays within
//! this process.

use berth_access::FleetBuckets;
use berth_cache::IndexStore;
use berth_cluster::{ClusterPeers, LeasedFlights, Redis, RedisBuckets, RedisSlots, SharedIndex};
use berth_config::Config;
use berth_config::Secret;
use berth_http::ClusterView;
use berth_metrics::Metrics;
use berth_pull::Surroundings;
use berth_upstream::FleetSlots;
use std::sync::Arc;

/// What the engine runs with, and the secret the peer endpoint answers
/// to (in a cluster).
pub(crate) struct Joined {
    pub(crate) index: Arc<dyn IndexStore>,
    pub(crate) surroundings: Surroundings,
    pub(crate) peer_secret: Option<Secret>,
    /// The shared counters the rate limits are kept in.
    pub(crate) buckets: Option<Arc<dyn FleetBuckets>>,
    /// What `/stats` shows of the cluster.
    pub(crate) view: Option<Arc<dyn ClusterView>>,
    /// The upstream request slots shared by the replicas.
    pub(crate) slots: Option<Arc<dyn FleetSlots>>,
}

/// The cluster for `/stats`: Redis's view, and this replica's peer bytes.
#[derive(Debug)]
struct StatsView {
    redis: Arc<Redis>,
    metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl ClusterView for StatsView {
    async fn snapshot(&self) -> serde_json::Value {
        let s = berth_cluster::cluster_status(&self.redis).await;
        let m = &self.metrics.cluster;
        serde_json::json!({
            "node": s.node,
            "redis": if s.redis_up { "up" } else { "down" },
            "replicas": s.replicas.iter().map(|r| serde_json::json!({
                "node": r.node,
                "version": r.version,
                "startedAt": humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_ms)
                ).to_string(),
                "lastBeatMsAgo": r.beat_ms_ago,
                "downloads": s.fills.iter().filter(|(_, node)| *node == r.node).count(),
            })).collect::<Vec<_>>(),
            "downloads": s.fills.iter().map(|(digest, node)| serde_json::json!({
                "digest": digest,
                "node": node,
            })).collect::<Vec<_>>(),
            "peerBytesIn": m.peer_bytes_in.get(),
            "peerBytesOut": m.peer_bytes_out.get(),
        })
    }
}

/// Join the cluster `config` names, if any.
pub(crate) fn join(
    config: &Config,
    local: Arc<dyn IndexStore>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Joined> {
    let Some(settings) = &config.cluster else {
        return Ok(Joined {
            index: local,
            surroundings: Surroundings::default(),
            peer_secret: None,
            buckets: None,
            view: None,
            slots: None,
        });
    };
    let redis = Redis::new(settings, Arc::clone(metrics)).map_err(anyhow::Error::msg)?;
    berth_cluster::start_heartbeat(&redis);
    let redis_for_view = Arc::clone(&redis);
    tracing::info!(
        node = redis.node(),
        lease = ?settings.lease,
        "clustered: the index and single flight are shared through Redis"
    );
    let index: Arc<dyn IndexStore> = Arc::new(SharedIndex::new(Arc::clone(&redis), local));
    let buckets: Arc<dyn FleetBuckets> = Arc::new(RedisBuckets::new(Arc::clone(&redis)));
    let slots: Arc<dyn FleetSlots> = Arc::new(RedisSlots::new(Arc::clone(&redis), settings.lease));
    let peers = ClusterPeers::new(Arc::clone(&redis), settings.secret.clone())
        .map_err(anyhow::Error::msg)?;
    let surroundings = Surroundings {
        flights: Arc::new(LeasedFlights::new(redis, settings.lease)),
        peers: Some(Arc::new(peers)),
        ..Surroundings::default()
    };
    Ok(Joined {
        index,
        surroundings,
        peer_secret: Some(settings.secret.clone()),
        buckets: Some(buckets),
        view: Some(Arc::new(StatsView {
            redis: Arc::clone(&redis_for_view),
            metrics: Arc::clone(metrics),
        })),
        slots: Some(slots),
    })
}
