//! Talking to upstream registries: one [`Upstream`] per configured
//! upstream, with token auth, manual redirect following (dropping
//! `Authorization` when the host changes) and an error type that says
//! whether upstream is down or gave a definite answer. In pass-through
//! mode a request carries the client's own `Authorization` (the `client`
//! argument) in place of berth's tokens, and a client's token request is
//! relayed to the upstream's realm (`token_relay`).
//!
//! Uses `berth-config` (transport settings), `berth-oci` and `berth-metrics`.

mod auth;
mod body;
mod challenge;
mod error;
mod failover;
mod fleet_slots;
mod mirror;
mod push;
mod redirect;
mod request;
mod retry;
mod slots;
mod token_relay;
mod warm;

pub use challenge::{AuthChallenge, parse_challenge, realm_allowed};
pub use error::UpstreamError;
pub use fleet_slots::{FleetSlot, FleetSlots};
pub use mirror::{BreakerState, MirrorHealth};
pub use push::{Write, WriteAnswer};
pub use redirect::OwnListeners;
pub use slots::{Slot, Urgency};
pub use token_relay::{TokenAsk, TokenReply};

use berth_config::UpstreamConfig;
use berth_metrics::Metrics;
use berth_oci::{Digest, Reference, RepoName, Resource};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest manifest berth accepts from upstream (distribution uses 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// One upstream registry: its mirrors, HTTP client and request slots.
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    http: reqwest::Client,
    /// For blobs redirected away from a public upstream: resolves to
    /// public addresses only.
    public_http: reqwest::Client,
    mirrors: Vec<mirror::Mirror>,
    slots: Arc<slots::Slots>,
    metrics: Arc<Metrics>,
    /// Where berth listens: never a redirect target.
    own: OwnListeners,
    /// The cluster's slots, taken beside this replica's own.
    fleet: std::sync::OnceLock<Arc<dyn FleetSlots>>,
}

/// A manifest as upstream sent it.
#[derive(Debug, Clone)]
pub struct ManifestFetch {
    /// Exact bytes.
    pub bytes: Bytes,
    /// `Content-Type` as sent.
    pub media_type: String,
    /// `Docker-Content-Digest` as sent, if valid.
    pub digest: Option<Digest>,
}

/// What a manifest HEAD told.
#[derive(Debug, Clone)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, if sent and valid.
    pub digest: Option<Digest>,
}

/// An upstream answer relayed to the client as it came (tag lists,
/// referrers), once checked.
#[derive(Debug, Clone)]
pub struct RelayedAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// `Link` for pagination, if sent.
    pub link: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// A blob download that has started: headers received, body to come.
#[derive(Debug)]
pub struct BlobDownload {
    /// Total blob size, when upstream said (`Content-Length`, or the total
    /// of `Content-Range` for a resumed download).
    pub size: Option<u64>,
    /// Leading body bytes to discard: upstream ignored the `Range` asked
    /// for and sent the blob from its start.
    skip: u64,
    upstream: String,
    response: reqwest::Response,
    slot: Slot,
}

/// The body of a blob download: chunks in order, holding the upstream
/// request slot until it is dropped.
#[derive(Debug)]
pub struct BlobBody {
    response: reqwest::Response,
    skip: u64,
    upstream: String,
    _slot: Slot,
}

impl BlobDownload {
    /// Start reading the body.
    pub fn into_body(self) -> BlobBody {
        BlobBody {
            response: self.response,
            skip: self.skip,
            upstream: self.upstream,
            _slot: self.slot,
        }
    }
}

impl BlobBody {
    /// The next chunk; `None` at the end of the body.
    pub async fn next(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        loop {
            let mut chunk = match self.response.chunk().await {
                Ok(c) => c?,
                Err(e) => return Some(Err(UpstreamError::from_transport(&self.upstream, &e))),
            };
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                chunk = chunk.slice(n..);
                self.skip -= n as u64;
            }
            if !chunk.is_empty() {
                return Some(Ok(chunk));
            }
        }
    }
}

impl Upstream {
    /// A client for the upstream in `config`, with its own connection pool and
    /// the configured connect and idle timeouts.
    pub fn new(
        config: UpstreamConfig,
        metrics: Arc<Metrics>,
        own: OwnListeners,
    ) -> Result<Self, reqwest::Error> {
        let r = &config.resilience;
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(r.connect_timeout)
                .read_timeout(r.idle_timeout)
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        };
        let http = builder().build()?;
        let public_http = builder()
            .dns_resolver(Arc::new(redirect::PublicOnly))
            .build()?;
        let mirrors = std::iter::once(config.url.clone())
            .chain(r.mirrors.iter().cloned())
            .map(mirror::Mirror::new)
            .collect();
        let slots = slots::Slots::new(r.max_concurrent as usize);
        let upstream = Self {
            config,
            http,
            public_http,
            mirrors,
            slots,
            metrics,
            own,
            fleet: std::sync::OnceLock::new(),
        };
        for i in 0..upstream.mirrors.len() {
            upstream.publish_mirror_state(i);
        }
        Ok(upstream)
    }

    /// The configured upstream.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Configured name, e.g. `docker.io`.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The health of each of its base URLs, the upstream's own first.
    pub fn mirror_health(&self) -> Vec<MirrorHealth> {
        self.mirrors.iter().map(mirror::Mirror::report).collect()
    }

    /// GET a manifest with every `Accept` line the client sent.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
        client: Option<&str>,
    ) -> Result<ManifestFetch, UpstreamError> {
        let path = format!("{repo}/manifests/{reference}");
        let call = request::Call::get(repo, &path, Resource::Manifest)
            .accept(accept)
            .client(client);
        let answer = self.send(call).await?;
        let response = answer.response;
        let content_type =
            header(&response, http::header::CONTENT_TYPE).filter(|t| !t.trim().is_empty());
        let digest = header(&response, "docker-content-digest").and_then(|d| d.parse().ok());
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
        {
            return Err(self.invalid("manifest is larger than 4 MiB"));
        }
        let bytes = self.read_answer(response, answer.sent_at).await?;
        // Bytes that miss the digest asked for are the caller's to refuse
        // (as a mismatch); everything else must be a manifest.
        let wrong_digest = matches!(reference, Reference::Digest(d) if *d != Digest::of(&bytes));
        if !wrong_digest {
            berth_oci::check_manifest(&bytes, content_type.as_deref())
                .map_err(|e| self.invalid(&e.to_string()))?;
        }
        let media_type = content_type.unwrap_or_else(|| berth_oci::sniff_manifest_type(&bytes));
        Ok(ManifestFetch {
            bytes,
            media_type,
            digest,
        })
    }

    /// HEAD a manifest: revalidates a tag without counting as a pull.
    pub async fn head_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
        client: Option<&str>,
    ) -> Result<ManifestHead, UpstreamError> {
        let path = format!("{repo}/manifests/{reference}");
        let call = request::Call::head(repo, &path, Resource::Manifest)
            .accept(accept)
            .client(client);
        let response = self.send(call).await?.response;
        Ok(ManifestHead {
            digest: header(&response, "docker-content-digest").and_then(|d| d.parse().ok()),
        })
    }

    /// Start downloading a blob from byte `offset` (0: the whole blob);
    /// follows redirects to a CDN. A download of `urgency` "later" (a
    /// prefetch) waits behind every request a client waits for.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        urgency: &Urgency,
        client: Option<&str>,
    ) -> Result<BlobDownload, UpstreamError> {
        let path = format!("{repo}/blobs/{digest}");
        let call = request::Call::get(repo, &path, Resource::Blob)
            .starting_at(offset)
            .urgency(urgency)
            .client(client);
        let answer = self.send(call).await?;
        let response = answer.response;
        let partial = response.status() == http::StatusCode::PARTIAL_CONTENT;
        let (size, skip) = if offset == 0 {
            (response.content_length(), 0)
        } else if partial {
            let range = header(&response, http::header::CONTENT_RANGE).unwrap_or_default();
            let Some((start, total)) = parse_content_range(&range) else {
                return Err(self.invalid(&format!(
                    "resumed blob answered with Content-Range {range:?}"
                )));
            };
            if start != offset {
                return Err(self.invalid(&format!("asked for bytes from {offset}, got {range:?}")));
            }
            (total, 0)
        } else {
            (response.content_length(), offset)
        };
        Ok(BlobDownload {
            size,
            skip,
            upstream: self.name().to_owned(),
            response,
            slot: answer.slot,
        })
    }

    /// HEAD a blob: its size, without downloading it.
    pub async fn head_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        client: Option<&str>,
    ) -> Result<Option<u64>, UpstreamError> {
        let path = format!("{repo}/blobs/{digest}");
        let call = request::Call::head(repo, &path, Resource::Blob).client(client);
        let response = self.send(call).await?.response;
        Ok(header(&response, http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()))
    }

    /// GET `/v2/<repo>/<suffix>` and hand the answer back as it is, for
    /// tag lists and referrers.
    pub async fn get_relayed(
        &self,
        repo: &RepoName,
        suffix: &str,
        kind: Resource,
        client: Option<&str>,
    ) -> Result<RelayedAnswer, UpstreamError> {
        let path = format!("{repo}/{suffix}");
        let accept = [
            "application/json".to_owned(),
            berth_oci::OCI_INDEX.to_owned(),
        ];
        let call = request::Call::get(repo, &path, kind)
            .accept(&accept)
            .client(client);
        let answer = self.send(call).await?;
        let response = answer.response;
        let status = response.status().as_u16();
        let content_type = header(&response, http::header::CONTENT_TYPE);
        let link = header(&response, http::header::LINK);
        let body = self.read_answer(response, answer.sent_at).await?;
        Ok(RelayedAnswer {
            status,
            content_type,
            link,
            body,
        })
    }

    /// Read a manifest-sized answer whose request was sent at `sent_at`,
    /// complete within `manifest_timeout` of that however it trickles.
    async fn read_answer(
        &self,
        response: reqwest::Response,
        sent_at: tokio::time::Instant,
    ) -> Result<Bytes, UpstreamError> {
        let limit = self.config.resilience.manifest_timeout;
        let read = body::read_limited(response, MAX_MANIFEST_BYTES, self.name());
        tokio::time::timeout_at(sent_at + limit, read)
            .await
            .map_err(|_| UpstreamError::Timeout {
                upstream: self.name().to_owned(),
                detail: format!("answer not complete within {limit:?} (manifest_timeout)"),
            })?
    }

    fn invalid(&self, detail: &str) -> UpstreamError {
        UpstreamError::Invalid {
            upstream: self.name().to_owned(),
            detail: detail.to_owned(),
        }
    }
}

/// `bytes <start>-<end>/<total>` → (start, total if known).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

fn header(response: &reqwest::Response, name: impl http::header::AsHeaderName) -> Option<String> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// Every configured upstream, by name.
#[derive(Debug, Default)]
pub struct UpstreamSet {
    by_name: HashMap<String, Arc<Upstream>>,
    default: Option<Arc<Upstream>>,
}

impl UpstreamSet {
    /// Build a client for every configured upstream, knowing no listener
    /// of berth's own (for tests and tools that serve nothing).
    pub fn new(configs: &[UpstreamConfig], metrics: &Arc<Metrics>) -> Result<Self, reqwest::Error> {
        Self::serving(configs, metrics, &OwnListeners::default())
    }

    /// Build a client for every configured upstream of a berth that
    /// listens where `own` says: no redirect may lead there.
    pub fn serving(
        configs: &[UpstreamConfig],
        metrics: &Arc<Metrics>,
        own: &OwnListeners,
    ) -> Result<Self, reqwest::Error> {
        let mut set = Self::default();
        for c in configs {
            let upstream = Upstream::new(c.clone(), Arc::clone(metrics), own.clone())?;
            let upstream = Arc::new(upstream);
            if c.default {
                set.default = Some(Arc::clone(&upstream));
            }
            set.by_name.insert(c.name.clone(), upstream);
        }
        Ok(set)
    }

    /// Keep every upstream's `max_concurrent` over the fleet too.
    pub fn share_slots(&self, fleet: &Arc<dyn FleetSlots>) {
        for upstream in self.by_name.values() {
            let _ = upstream.fleet.set(Arc::clone(fleet));
        }
    }

    /// The fleet's slots these upstreams share, if any.
    pub fn fleet_slots(&self) -> Option<Arc<dyn FleetSlots>> {
        self.by_name.values().find_map(|u| u.fleet.get().cloned())
    }

    /// The upstream named `name` (its configured name or an alias).
    pub fn by_name(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name).or_else(|| {
            self.by_name
                .values()
                .find(|r| r.config.aliases.iter().any(|a| a == name))
        })
    }

    /// The upstream whose `host_prefix` is `prefix`.
    pub fn by_host_prefix(&self, prefix: &str) -> Option<&Arc<Upstream>> {
        self.by_name
            .values()
            .find(|r| r.config.host_prefix.as_deref() == Some(prefix))
    }

    /// The default upstream, if one is configured.
    pub fn default_upstream(&self) -> Option<&Arc<Upstream>> {
        self.default.as_ref()
    }

    /// Every upstream, by name.
    pub fn all(&self) -> Vec<&Arc<Upstream>> {
        let mut all: Vec<&Arc<Upstream>> = self.by_name.values().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }
}
