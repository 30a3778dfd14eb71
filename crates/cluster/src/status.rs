//! What the cluster looks like from one replica, for `/stats` and the
//! dashboard: the replicas alive (with their version, start and last
//! heartbeat), whether Redis answers, and the blob
//! downloads running in the fleet with the replica running each.

use crate::Redis;
use crate::nodes::{self, Replica};
use redis::AsyncCommands as _;

/// Downloads listed at most.
const MAX_FILLS: usize = 100;

/// The cluster as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This replica's URL.
    pub node: String,
    /// Whether Redis answers.
    pub redis_up: bool,
    /// The replicas alive, this one included (empty when Redis is down).
    pub replicas: Vec<Replica>,
    /// Blob downloads running in the fleet: digest, replica.
    pub fills: Vec<(String, String)>,
}

/// Ask Redis what the cluster looks like now.
pub async fn cluster_status(redis: &Redis) -> ClusterStatus {
    let replicas = nodes::replica_health(redis).await;
    let fills = redis
        .run("list the fleet's downloads", |mut c| async move {
            let mut names = Vec::new();
            {
                let mut keys = c.scan_match::<_, String>("berth:lease:{blob *").await?;
                while let Some(key) = keys.next_item().await {
                    names.push(key);
                    if names.len() >= MAX_FILLS {
                        break;
                    }
                }
            }
            let mut fills = Vec::new();
            for name in names {
                let holder: Option<String> = c.get(&name).await?;
                let digest = name
                    .trim_start_matches("berth:lease:{blob ")
                    .trim_end_matches('}')
                    .to_owned();
                if let Some((node, _token)) = holder.as_deref().and_then(|h| h.rsplit_once(' ')) {
                    fills.push((digest, node.to_owned()));
                }
            }
            fills.sort();
            Ok(fills)
        })
        .await
        .unwrap_or_default();
    ClusterStatus {
        node: redis.node().to_owned(),
        redis_up: redis.is_up(),
        replicas,
        fills,
    }
}
