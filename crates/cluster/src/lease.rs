//! Single flight over the fleet. A flight takes the process's own lock
//! first (so that one request per replica asks Redis), then a lease in
//! Redis: `berth:lease:{key}`, set only if absent, with a fencing token
//! from a counter beside it. The lease expires after `lease` unless its
//! holder renews it, which a task does every third of that while the
//! flight is held: a replica that dies or freezes loses it, and another
//! takes the flight over. Redis measures the expiry itself, so clocks
//! that disagree between replicas do not matter.
//!
//! A holder that lost its lease and goes on (a frozen replica that
//! resumes) publishes nothing: before a fill commits, it asks whether the
//! lease still holds its value (holder and fencing token), and one that
//! lost it leaves the blob to the replica that took the flight over. The
//! window between that answer and the commit is short, and what could slip
//! through it is harmless: blobs are content-addressed and verified, so a
//! second commit stores the same bytes. A tag write older than the tag
//! Redis holds is refused (`index.rs`).
//!
//! When Redis cannot answer, the process's own lock alone is held: each
//! replica coordinates within itself until Redis is back.

use crate::{Redis, keys};
use async_trait::async_trait;
use berth_pull::{Claim, Flight, FlightLock, Hold, LocalFlights};
use std::sync::Arc;
use std::time::Duration;

/// Take the lease if nobody holds it, with the next fencing token.
/// KEYS: the lease, its counter; ARGV: the holder, the lease in ms.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
";

/// Extend the lease if it is still this holder's. KEYS: the lease;
/// ARGV: the holder's value, the lease in ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Give the lease up if it is still this holder's. KEYS: the lease;
/// ARGV: the holder's value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The first wait between two tries of a held lease; it doubles up to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(250);

/// Flight locks held across the replicas.
#[derive(Debug)]
pub struct LeasedFlights {
    redis: Arc<Redis>,
    local: LocalFlights,
    lease: Duration,
    scripts: Arc<Scripts>,
}

#[derive(Debug)]
struct Scripts {
    acquire: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

/// A lease held in Redis, renewed until dropped.
#[derive(Debug)]
struct Held {
    /// Keeps the process's own lock.
    _local: Flight,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// Redis, the scripts, the lease's key and this holder's value in it.
    release: Option<(Arc<Redis>, Arc<Scripts>, String, String)>,
}

#[async_trait]
impl Hold for Held {
    /// Whether the lease still holds this holder's value: a lease that
    /// expired (its holder was paused or cut off longer than the lease)
    /// or that another replica took since is lost.
    async fn still_held(&self) -> Option<bool> {
        let (redis, _, lease, value) = self.release.as_ref()?;
        let key = lease.clone();
        let now = redis
            .run("check a lease", |mut c| async move {
                redis::AsyncCommands::get::<_, Option<String>>(&mut c, key).await
            })
            .await?;
        let held = now.as_deref() == Some(value.as_str());
        if !held {
            redis.metrics().cluster.event("lease_lost_before_commit");
            tracing::warn!(
                lease,
                holder_now = now.as_deref().unwrap_or("nobody"),
                "this replica lost its lease during the flight: it leaves publishing to the replica that took it over"
            );
        }
        Some(held)
    }
}

impl LeasedFlights {
    /// Flights over `redis`, each lease lasting `lease` unless renewed.
    pub fn new(redis: Arc<Redis>, lease: Duration) -> Self {
        Self {
            redis,
            local: LocalFlights::default(),
            lease,
            scripts: Arc::new(Scripts {
                acquire: redis::Script::new(ACQUIRE),
                renew: redis::Script::new(RENEW),
                release: redis::Script::new(RELEASE),
            }),
        }
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Try to take the lease on `key` once: `Some(token)` when taken,
    /// `Some(0)` when another holds it, `None` when Redis cannot say.
    async fn try_acquire(&self, lease: &str, fence: &str, holder: &str) -> Option<u64> {
        let script = &self.scripts.acquire;
        let (lease, fence, holder, ms) = (
            lease.to_owned(),
            fence.to_owned(),
            holder.to_owned(),
            self.lease_ms(),
        );
        self.redis
            .run("take a lease", |mut c| async move {
                let mut invocation = script.key(lease);
                invocation.key(fence).arg(holder).arg(ms);
                invocation.invoke_async::<u64>(&mut c).await
            })
            .await
    }
}

#[async_trait]
impl FlightLock for LeasedFlights {
    async fn claim(&self, key: &str) -> Claim {
        self.take(key, true).await
    }

    async fn lock(&self, key: &str) -> Flight {
        match self.take(key, false).await {
            Claim::Mine(flight) => flight,
            Claim::Elsewhere(_) => unreachable!("take gives way only when asked to"),
        }
    }
}

impl LeasedFlights {
    /// Take the lease on `key`, waiting while another holds it; with
    /// `give_way`, say which replica holds it instead of waiting.
    async fn take(&self, key: &str, give_way: bool) -> Claim {
        let local = self.local.lock(key).await;
        let mut waited = local.waited;
        let (lease, fence) = (keys::lease(key), keys::fence(key));
        let holder = self.redis.node().to_owned();
        let mut pause = FIRST_POLL;
        loop {
            match self.try_acquire(&lease, &fence, &holder).await {
                // Redis cannot say: within this replica only.
                None => return Claim::Mine(local),
                Some(0) => {
                    if give_way
                        && let Some(node) = self.holder(&lease).await
                        && node != holder
                    {
                        return Claim::Elsewhere(node);
                    }
                    if !waited {
                        self.redis.metrics().cluster.event("lease_waited");
                    }
                    waited = true;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_POLL);
                }
                Some(token) => {
                    self.redis.metrics().cluster.event("lease_taken");
                    let value = format!("{holder} {token}");
                    let renewer = tokio::spawn(renew(
                        Arc::clone(&self.redis),
                        Arc::clone(&self.scripts),
                        lease.clone(),
                        value.clone(),
                        self.lease,
                    ));
                    let held = Held {
                        _local: local,
                        renewer: Some(renewer),
                        release: Some((
                            Arc::clone(&self.redis),
                            Arc::clone(&self.scripts),
                            lease,
                            value,
                        )),
                    };
                    return Claim::Mine(Flight::held(waited, Box::new(held)));
                }
            }
        }
    }

    /// The replica holding the lease `lease`, if Redis says.
    async fn holder(&self, lease: &str) -> Option<String> {
        let lease = lease.to_owned();
        let value = self
            .redis
            .run("read a lease", |mut c| async move {
                redis::AsyncCommands::get::<_, Option<String>>(&mut c, lease).await
            })
            .await??;
        value.rsplit_once(' ').map(|(node, _)| node.to_owned())
    }
}

/// Renew the lease every third of its length until aborted. A renewal
/// that finds the lease gone or another's (this replica was frozen or cut
/// off for longer than the lease) is counted and logged; the flight goes
/// on, which is safe (see the module's header).
async fn renew(
    redis: Arc<Redis>,
    scripts: Arc<Scripts>,
    lease: String,
    value: String,
    every: Duration,
) {
    let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(every / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (script, key, value) = (&scripts.renew, lease.clone(), value.clone());
        let renewed = redis
            .run("renew a lease", |mut c| async move {
                let mut invocation = script.key(key);
                invocation.arg(value).arg(ms);
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await;
        if renewed == Some(0) {
            redis.metrics().cluster.event("lease_lost");
            tracing::warn!(
                lease,
                "a lease expired while its flight went on (this replica was paused or cut off): another replica may have taken it over"
            );
            return;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Some((redis, scripts, lease, value)) = self.release.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let script = &scripts.release;
                redis
                    .run("release a lease", |mut c| async move {
                        let mut invocation = script.key(lease);
                        invocation.arg(value);
                        invocation.invoke_async::<i64>(&mut c).await
                    })
                    .await;
            });
        }
    }
}
