//! Rate limits over the fleet: the generic cell rate algorithm in a Lua
//! script, one key per bucket holding the time it is next empty, in
//! microseconds of Redis's own clock (so the replicas' clocks do not
//! matter). No Redis module is needed.

use crate::{Redis, keys};
use async_trait::async_trait;
use berth_access::FleetBuckets;
use std::sync::Arc;
use std::time::Duration;

/// Take one from a bucket. KEYS: the bucket; ARGV: microseconds between
/// two requests at the sustained rate, microseconds of burst credit.
/// Returns 0 when taken, else the microseconds to wait.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tonumber(ARGV[2])
if wait > 0 then return wait end
local next = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.floor((next - now) / 1000) + 1000)
return 0
";

/// Return one taken. KEYS: the bucket; ARGV: microseconds per request.
const GIVE_BACK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[1], string.format('%d', tonumber(redis.call('GET', KEYS[1])) - tonumber(ARGV[1])), 'KEEPTTL')
end
return 0
";

/// Buckets in Redis.
#[derive(Debug)]
pub struct RedisBuckets {
    redis: Arc<Redis>,
    take: redis::Script,
    give_back: redis::Script,
}

impl RedisBuckets {
    /// Buckets kept in `redis`.
    pub fn new(redis: Arc<Redis>) -> Self {
        Self {
            redis,
            take: redis::Script::new(TAKE),
            give_back: redis::Script::new(GIVE_BACK),
        }
    }
}

fn micros_between(per_second: u32) -> u64 {
    1_000_000 / u64::from(per_second.max(1))
}

#[async_trait]
impl FleetBuckets for RedisBuckets {
    async fn take(&self, key: &str, per_second: u32, burst: u32) -> Option<Result<(), Duration>> {
        let interval = micros_between(per_second);
        let (script, key) = (&self.take, keys::bucket(key));
        let wait = self
            .redis
            .run("take from a rate limit", |mut c| async move {
                let mut invocation = script.key(key);
                invocation.arg(interval).arg(interval * u64::from(burst));
                invocation.invoke_async::<u64>(&mut c).await
            })
            .await?;
        Some(if wait == 0 {
            Ok(())
        } else {
            Err(Duration::from_micros(wait))
        })
    }

    async fn give_back(&self, key: &str, per_second: u32) {
        let interval = micros_between(per_second);
        let (script, key) = (&self.give_back, keys::bucket(key));
        self.redis
            .run("give back to a rate limit", |mut c| async move {
                let mut invocation = script.key(key);
                invocation.arg(interval);
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await;
    }
}
