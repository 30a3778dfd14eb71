//! The replicas that are alive: each one writes a heartbeat key that
//! expires unless renewed, so a replica that died or froze drops out of
//! the list by itself. The heartbeat also keeps trying Redis while it is
//! down, so that a replica rejoins without waiting for a request.

use crate::{Redis, keys};
use redis::AsyncCommands as _;
use std::sync::Arc;
use std::time::Duration;

/// How often a replica says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a heartbeat counts: a few missed beats drop a replica.
const ALIVE_FOR_MS: u64 = 5_000;

/// Say this replica is alive every [`HEARTBEAT`], for as long as the
/// runtime runs.
pub fn start_heartbeat(redis: &Arc<Redis>) {
    let redis = Arc::clone(redis);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let key = keys::node(redis.node());
            redis
                .run("heartbeat", |mut c| async move {
                    c.pset_ex::<_, _, ()>(key, "alive", ALIVE_FOR_MS).await
                })
                .await;
        }
    });
}

/// The replicas alive now, this one included, sorted; empty when Redis
/// cannot say.
pub async fn replicas(redis: &Redis) -> Vec<String> {
    let mut nodes = redis
        .run("list replicas", |mut c| async move {
            let mut found = Vec::new();
            let mut keys = c.scan_match::<_, String>(keys::NODES).await?;
            while let Some(key) = keys.next_item().await {
                found.push(key);
            }
            Ok(found)
        })
        .await
        .unwrap_or_default();
    for n in &mut nodes {
        *n = n.trim_start_matches("berth:node:").to_owned();
    }
    nodes.sort();
    nodes
}
