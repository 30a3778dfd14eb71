//! Joining the other replicas when `[cluster]` is configured: the index
//! shared through Redis over this replica's own, and single flight by
//! leases. Without `[cluster]`, both stay within this process.

use berth_cache::IndexStore;
use berth_cluster::{LeasedFlights, Redis, SharedIndex};
use berth_config::Config;
use berth_metrics::Metrics;
use berth_pull::Surroundings;
use std::sync::Arc;

/// The index and the surroundings the engine runs with.
pub(crate) fn join(
    config: &Config,
    local: Arc<dyn IndexStore>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<dyn IndexStore>, Surroundings)> {
    let Some(settings) = &config.cluster else {
        return Ok((local, Surroundings::default()));
    };
    let redis = Redis::new(settings, Arc::clone(metrics)).map_err(anyhow::Error::msg)?;
    berth_cluster::start_heartbeat(&redis);
    tracing::info!(
        node = redis.node(),
        lease = ?settings.lease,
        "clustered: the index and single flight are shared through Redis"
    );
    let index: Arc<dyn IndexStore> = Arc::new(SharedIndex::new(Arc::clone(&redis), local));
    let surroundings = Surroundings {
        flights: Arc::new(LeasedFlights::new(redis, settings.lease)),
        ..Surroundings::default()
    };
    Ok((index, surroundings))
}
