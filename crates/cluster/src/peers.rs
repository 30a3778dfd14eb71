//! The other replicas as a source of blobs and manifests. A fill that another replica is
//! downloading (it holds the lease) or holds (it said so in
//! `berth:holders:{digest}`) is read from that replica's peer endpoint,
//! with the cluster secret, from the byte the fill reached. When the peer
//! fails (it died, froze, or no longer has the blob), the fill goes on
//! from upstream with a `Range` from the byte reached: its clients see no
//! error, and the bytes are verified either way. A holder that answers
//! 404 (it evicted the blob) leaves the blob's holders.

use crate::{Redis, keys, nodes};
use async_trait::async_trait;
use berth_config::Secret;
use berth_oci::{Digest, RepoName};
use berth_pull::{Download, FillSource, Peers};
use berth_upstream::{UpstreamError, Urgency};
use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a holder's advert lives after its last renewal.
const HOLDERS_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

/// How long a peer may take to send a whole manifest.
const SMALL_READ_LIMIT: Duration = Duration::from_secs(10);

/// How long a peer may send nothing before it counts as failed.
const PEER_STALL: Duration = Duration::from_secs(10);

/// The replicas of a cluster, reached over HTTP.
#[derive(Debug)]
pub struct ClusterPeers {
    redis: Arc<Redis>,
    client: reqwest::Client,
    secret: Secret,
}

impl ClusterPeers {
    /// Peers found through `redis`, asked with `secret`.
    pub fn new(redis: Arc<Redis>, secret: Secret) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(PEER_STALL)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the peer HTTP client: {e}"))?;
        Ok(Self {
            redis,
            client,
            secret,
        })
    }
}

#[async_trait]
impl Peers for ClusterPeers {
    fn source(&self, node: &str, upstream: Arc<dyn FillSource>) -> Arc<dyn FillSource> {
        self.redis.metrics().cluster.event("peer_fill");
        Arc::new(PeerSource {
            node: node.to_owned(),
            client: self.client.clone(),
            secret: self.secret.clone(),
            upstream,
            failed: Arc::new(AtomicBool::new(false)),
            redis: Arc::clone(&self.redis),
        })
    }

    async fn holding(&self, digest: &Digest) -> Option<String> {
        let key = keys::holders(digest);
        let holders = self
            .redis
            .run("read holders", |mut c| async move {
                c.smembers::<_, Vec<String>>(key).await
            })
            .await?;
        let alive = nodes::replicas(&self.redis).await;
        holders
            .into_iter()
            .find(|n| n != self.redis.node() && alive.contains(n))
    }

    async fn read_small(&self, node: &str, digest: &Digest, limit: usize) -> Option<Bytes> {
        tokio::time::timeout(SMALL_READ_LIMIT, self.read_small_now(node, digest, limit))
            .await
            .ok()
            .flatten()
    }

    async fn hold(&self, digest: &Digest) {
        let (key, node) = (keys::holders(digest), self.redis.node().to_owned());
        self.redis
            .run("advertise a blob", |mut c| async move {
                c.sadd::<_, _, ()>(&key, node).await?;
                c.pexpire::<_, ()>(&key, HOLDERS_LIFETIME_MS).await
            })
            .await;
    }
}

impl ClusterPeers {
    /// [`Peers::read_small`] without its time limit.
    async fn read_small_now(&self, node: &str, digest: &Digest, limit: usize) -> Option<Bytes> {
        let url = format!("{node}/_berth/peer/blobs/{digest}");
        let response = self
            .client
            .get(&url)
            .bearer_auth(self.secret.expose())
            .send()
            .await
            .ok()?;
        if response.status() == http::StatusCode::NOT_FOUND {
            forget_holder(&self.redis, node, digest).await;
        }
        if response.status() != http::StatusCode::OK
            || response.content_length().is_some_and(|n| n > limit as u64)
        {
            return None;
        }
        let mut body = response.bytes_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.ok()?;
            if bytes.len() + chunk.len() > limit {
                return None;
            }
            bytes.extend_from_slice(&chunk);
        }
        let metrics = self.redis.metrics();
        metrics.cluster.peer_bytes_in.inc_by(bytes.len() as u64);
        metrics.cluster.event("peer_manifest");
        Some(Bytes::from(bytes))
    }
}

/// A blob read from a peer, and from upstream once the peer failed.
#[derive(Debug)]
struct PeerSource {
    node: String,
    client: reqwest::Client,
    secret: Secret,
    upstream: Arc<dyn FillSource>,
    /// Set once the peer failed: the rest comes from upstream.
    failed: Arc<AtomicBool>,
    redis: Arc<Redis>,
}

/// Take `node` out of `digest`'s holders: it answered that it has no such
/// blob (it evicted it), so no replica should ask it again.
async fn forget_holder(redis: &Redis, node: &str, digest: &Digest) {
    let (key, node) = (keys::holders(digest), node.to_owned());
    redis
        .run("forget a holder", |mut c| async move {
            c.srem::<_, _, ()>(key, node).await
        })
        .await;
}

impl PeerSource {
    async fn ask_peer(&self, digest: &Digest, offset: u64) -> Result<Download, String> {
        let url = format!("{}/_berth/peer/blobs/{digest}", self.node);
        let mut request = self.client.get(&url).bearer_auth(self.secret.expose());
        if offset > 0 {
            request = request.header(http::header::RANGE, format!("bytes={offset}-"));
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let size = match status.as_u16() {
            200 if offset == 0 => response.content_length(),
            206 => response
                .headers()
                .get(http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit_once('/'))
                .and_then(|(_, total)| total.parse().ok()),
            404 => {
                forget_holder(&self.redis, &self.node, digest).await;
                return Err(format!("answered {status}"));
            }
            _ => return Err(format!("answered {status}")),
        };
        let (failed, metrics) = (Arc::clone(&self.failed), Arc::clone(&self.redis));
        let body = response.bytes_stream().map(move |chunk| match chunk {
            Ok(bytes) => {
                metrics
                    .metrics()
                    .cluster
                    .peer_bytes_in
                    .inc_by(bytes.len() as u64);
                Ok(bytes)
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                metrics.metrics().cluster.event("peer_failed");
                Err(UpstreamError::Unreachable {
                    upstream: "peer".to_owned(),
                    detail: format!("the peer replica broke off: {e}"),
                    circuit_open_for: None,
                })
            }
        });
        Ok(Download {
            size,
            body: Box::pin(body),
        })
    }
}

#[async_trait]
impl FillSource for PeerSource {
    fn name(&self) -> &str {
        self.upstream.name()
    }

    async fn fetch(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        urgency: &Urgency,
    ) -> Result<Download, UpstreamError> {
        if !self.failed.load(Ordering::Relaxed) {
            match self.ask_peer(digest, offset).await {
                Ok(download) => {
                    tracing::info!(%digest, peer = self.node, offset, "reading a blob from a peer replica");
                    return Ok(download);
                }
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    self.redis.metrics().cluster.event("peer_failed");
                    tracing::warn!(%digest, peer = self.node, error = %e, "a peer replica cannot serve a blob: fetching it from upstream");
                }
            }
        } else {
            tracing::warn!(%digest, peer = self.node, offset, "the peer replica broke off: going on from upstream");
        }
        self.upstream.fetch(repo, digest, offset, urgency).await
    }
}
