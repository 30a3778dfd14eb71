//! The replicas that are alive: each one writes a heartbeat key that
//! expires unless renewed, so a replica that died or froze drops out of
//! the list by itself. The beat says which version runs and since when;
//! what is left of the key's life says how long ago the replica beat. The
//! heartbeat also keeps trying Redis while it is down, so that a replica
//! rejoins without waiting for a request.

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
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let beat = format!("{} {started_ms}", env!("CARGO_PKG_VERSION"));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let key = keys::node(redis.node());
            let beat = beat.clone();
            redis
                .run("heartbeat", |mut c| async move {
                    c.pset_ex::<_, _, ()>(key, beat, ALIVE_FOR_MS).await
                })
                .await;
        }
    });
}

/// A replica alive now, as its heartbeat tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its URL.
    pub node: String,
    /// The version it runs.
    pub version: String,
    /// When it started, by its own clock (Unix milliseconds).
    pub started_ms: u64,
    /// How long ago it last beat, by Redis's clock.
    pub beat_ms_ago: u64,
}

/// The replicas alive now with what their heartbeats say, sorted; empty
/// when Redis cannot say.
pub(crate) async fn replica_health(redis: &Redis) -> Vec<Replica> {
    let nodes = replicas(redis).await;
    let keys: Vec<String> = nodes.iter().map(|n| keys::node(n)).collect();
    let beats = redis
        .run("read heartbeats", |mut c| async move {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.get(key).pttl(key);
            }
            pipe.query_async::<Vec<(Option<String>, i64)>>(&mut c).await
        })
        .await
        .unwrap_or_default();
    nodes
        .into_iter()
        .zip(beats)
        .filter_map(|(node, (beat, ttl))| {
            let (version, started) = beat?
                .split_once(' ')
                .map(|(v, s)| (v.to_owned(), s.to_owned()))?;
            Some(Replica {
                node,
                version,
                started_ms: started.parse().ok()?,
                beat_ms_ago: ALIVE_FOR_MS.saturating_sub(u64::try_from(ttl).ok()?),
            })
        })
        .collect()
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
