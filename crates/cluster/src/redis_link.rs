//! The connection to Redis and whether it answers. Every command goes
//! through [`Redis::run`], which gives `None` when Redis cannot answer
//! within [`COMMAND_TIMEOUT`]: the caller then coordinates locally. An
//! outage is logged once when it starts and once when it ends, counted,
//! and shown by `berth_cluster_redis_up`; while it lasts, reconnecting is
//! tried at most every [`RETRY_EVERY`], and by the heartbeat, so that a
//! replica rejoins by itself when Redis is back.

use berth_config::ClusterSettings;
use berth_metrics::Metrics;
use redis::aio::MultiplexedConnection;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one command may take before Redis counts as unreachable: a
/// client's request waits on it.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

/// How often an unreachable Redis is tried again by requests.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Redis, shared by everything that coordinates through it.
pub struct Redis {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// When a connection may next be tried, while Redis is down.
    retry_at: Mutex<Option<Instant>>,
    up: AtomicBool,
    /// Whether it ever answered (the first failure at start is logged as
    /// such, not as a loss).
    ever_up: AtomicBool,
    /// Whether a Redis unreachable since the start was logged.
    told: AtomicBool,
    metrics: Arc<Metrics>,
    node: String,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("node", &self.node)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// The Redis `settings` name. Nothing is dialled yet: a replica starts
    /// and serves whether Redis answers or not.
    pub fn new(settings: &ClusterSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, String> {
        let mut url = settings.redis_url.clone();
        if let Some((password, _)) = &settings.redis_password {
            url.set_password(Some(password.expose()))
                .map_err(|()| "cluster.redis_url: cannot carry a password".to_owned())?;
        }
        // The error must not repeat the URL: it may now hold the password.
        let client = match &settings.redis_ca {
            // rediss:// with the operator's CA; without one, the system's
            // roots (and always the host name checked).
            Some((pem, _)) => redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(url.as_str()),
        }
        .map_err(|e| {
            let keys = if settings.redis_ca.is_some() {
                "cluster.redis_url or cluster.redis_ca_file"
            } else {
                "cluster.redis_url"
            };
            format!("{keys}: {}", e.kind_text())
        })?;
        metrics.cluster.redis_up.set(0);
        Ok(Arc::new(Self {
            client,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            retry_at: Mutex::new(None),
            up: AtomicBool::new(false),
            ever_up: AtomicBool::new(false),
            told: AtomicBool::new(false),
            metrics,
            node: settings.node_url.as_str().trim_end_matches('/').to_owned(),
        }))
    }

    /// Send one `PING` now: `Err` says why Redis did not answer (for
    /// `check-config --probe`; serving never waits on it).
    pub async fn ping(&self) -> Result<(), String> {
        let dialled = tokio::time::timeout(
            COMMAND_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| format!("no connection within {COMMAND_TIMEOUT:?}"))?;
        let mut c = dialled.map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(
            COMMAND_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await
        .map_err(|_| format!("no answer to PING within {COMMAND_TIMEOUT:?}"))?;
        answer.map(|_| ()).map_err(|e| e.to_string())
    }

    /// This replica's URL, as the others reach it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether Redis answered the last command sent to it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The metrics the cluster counts in.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Run one exchange with Redis; `None` when Redis cannot answer now.
    pub(crate) async fn run<T, F, Fut>(&self, what: &'static str, exchange: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, exchange(connection)).await {
            Ok(Ok(value)) => {
                self.reached();
                Some(value)
            }
            Ok(Err(e)) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                // Redis answered, with an error: it is up, this command
                // failed.
                self.metrics.cluster.event("redis_failed");
                tracing::warn!(what, error = %e, "a Redis command failed");
                None
            }
            Ok(Err(e)) => {
                self.lost(&e.to_string());
                None
            }
            Err(_) => {
                self.lost(&format!("no answer within {COMMAND_TIMEOUT:?}"));
                None
            }
        }
    }

    /// A connection, dialled if none is open and a retry is due.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Some(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Some(c);
        }
        {
            let retry_at = self.retry_at.lock().unwrap_or_else(PoisonError::into_inner);
            if retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
        }
        let dialled = tokio::time::timeout(
            COMMAND_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await;
        match dialled {
            Ok(Ok(c)) => {
                *self
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.lost(&e.to_string());
                None
            }
            Err(_) => {
                self.lost(&format!("no connection within {COMMAND_TIMEOUT:?}"));
                None
            }
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reached(&self) {
        *self.retry_at.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if !self.up.swap(true, Ordering::Relaxed) {
            self.metrics.cluster.redis_up.set(1);
            if self.ever_up.swap(true, Ordering::Relaxed) {
                self.metrics.cluster.event("redis_back");
                tracing::info!("Redis answers again: coordinating with the other replicas");
            } else {
                tracing::info!(node = self.node, "joined the cluster through Redis");
            }
        }
    }

    fn lost(&self, error: &str) {
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        *self.retry_at.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Instant::now() + RETRY_EVERY);
        let was_up = self.up.swap(false, Ordering::Relaxed);
        self.metrics.cluster.redis_up.set(0);
        if was_up {
            self.metrics.cluster.event("redis_lost");
            tracing::warn!(%error, "Redis does not answer: serving on, coordinating within this replica until it is back");
        } else if !self.ever_up.load(Ordering::Relaxed) && !self.told.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(%error, "Redis does not answer yet: serving, coordinating within this replica until it does");
        }
    }
}

/// The short text of a Redis error, without anything it quotes.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    fn kind_text(&self) -> String {
        format!("{:?}", self.kind())
    }
}
