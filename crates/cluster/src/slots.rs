//! An upstream's `max_concurrent` over the fleet: a sorted set per
//! upstream whose members are the slots held, each scored with the time
//! (Redis's clock, ms) it expires unless renewed. Taking a slot drops the
//! expired ones first, so a replica that died or froze holding slots gives
//! them back after one lease. A held slot is renewed every third of the
//! lease and removed when dropped.

use crate::{Redis, keys};
use async_trait::async_trait;
use berth_upstream::{FleetSlot, FleetSlots};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Take a slot if fewer than `max` are held. KEYS: the set; ARGV: max,
/// lease (ms), the slot's name.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 1
";

/// Extend a held slot. KEYS: the set; ARGV: lease (ms), the slot's name.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return 1
";

const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(250);

/// Upstream request slots in Redis.
#[derive(Debug)]
pub struct RedisSlots {
    redis: Arc<Redis>,
    lease: Duration,
    take: redis::Script,
    renew: Arc<redis::Script>,
    /// Names this replica's slots apart.
    next: AtomicU64,
}

impl RedisSlots {
    /// Slots kept in `redis`, each lasting `lease` unless renewed.
    pub fn new(redis: Arc<Redis>, lease: Duration) -> Self {
        Self {
            redis,
            lease,
            take: redis::Script::new(TAKE),
            renew: Arc::new(redis::Script::new(RENEW)),
            next: AtomicU64::new(0),
        }
    }
}

/// A slot held in Redis.
#[derive(Debug)]
struct Held {
    renewer: tokio::task::JoinHandle<()>,
    release: Option<(Arc<Redis>, String, String)>,
}

#[async_trait]
impl FleetSlots for RedisSlots {
    async fn acquire(&self, upstream: &str, max: u32) -> Option<FleetSlot> {
        let set = keys::slots(upstream);
        let name = format!(
            "{} {}",
            self.redis.node(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            let (script, key, member) = (&self.take, set.clone(), name.clone());
            let taken = self
                .redis
                .run("take an upstream slot", |mut c| async move {
                    let mut invocation = script.key(key);
                    invocation.arg(max).arg(ms).arg(member);
                    invocation.invoke_async::<i64>(&mut c).await
                })
                .await?;
            if taken == 1 {
                let renewer = tokio::spawn(renew(
                    Arc::clone(&self.redis),
                    Arc::clone(&self.renew),
                    set.clone(),
                    name.clone(),
                    self.lease,
                ));
                return Some(Box::new(Held {
                    renewer,
                    release: Some((Arc::clone(&self.redis), set, name)),
                }));
            }
            if !waited {
                waited = true;
                self.redis.metrics().cluster.event("slot_waited");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}

/// Renew a held slot every third of the lease until aborted.
async fn renew(
    redis: Arc<Redis>,
    script: Arc<redis::Script>,
    set: String,
    name: String,
    lease: Duration,
) {
    let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (script, key, member) = (&script, set.clone(), name.clone());
        redis
            .run("renew an upstream slot", |mut c| async move {
                let mut invocation = script.key(key);
                invocation.arg(ms).arg(member);
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
        if let Some((redis, set, name)) = self.release.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                redis
                    .run("free an upstream slot", |mut c| async move {
                        redis::AsyncCommands::zrem::<_, _, i64>(&mut c, set, name).await
                    })
                    .await;
            });
        }
    }
}
