//! The one metrics struct: every counter berth exports, registered in its
//! own prometheus-client registry (no process globals), so several
//! instances can live in one process.
//!
//! Depends on no other berth crate.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod cluster;
mod stats;
mod tls;
mod upstream;
pub use cluster::{ClusterEventLabels, ClusterMetrics};
pub use stats::{Minute, RecentError, Served, Stats, UpstreamTotals};
pub use tls::{CertLoadLabels, CertificateLabels, TlsMetrics};
pub use upstream::{ErrorLabels, LatencyLabels, NameLabels, UpstreamMetrics};

/// Labels of `berth_http_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name such as `manifest` or `blob`.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of `berth_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    /// Route name such as `manifest` or `blob`.
    pub route: &'static str,
    /// How the cache answered (`hit`, `miss`, `stale`, …), or `none` for
    /// a request that did not reach it.
    pub cache: &'static str,
}

/// Labels of `berth_cache_events`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `manifest` or `blob`.
    pub kind: &'static str,
    /// `hit`, `miss`, `stale`, `coalesced`, `revalidated`, `negative`,
    /// `direct`, `failed` (the pull was answered with an error),
    /// `link_confirmed` (upstream confirmed a digest under a repository);
    /// for blobs also `eager` (a prefetch started) and
    /// `eager_skipped` (one not started for want of budget or room).
    pub outcome: &'static str,
}

/// Labels of the upstream counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Configured upstream name.
    pub upstream: String,
}

/// Labels of `berth_upstream_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamRequestLabels {
    /// Configured upstream name.
    pub upstream: String,
    /// `manifest`, `blob`, `token`, `tags`, `referrers` or `ping`.
    pub kind: &'static str,
    /// HTTP status, or 0 when no response came.
    pub status: u16,
}

/// Labels of `berth_upstream_mirror_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    /// Configured upstream name.
    pub upstream: String,
    /// The mirror's base URL.
    pub mirror: String,
}

/// Every metric berth exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Client requests by route and status.
    pub http_requests: Family<RouteLabels, Counter>,
    /// How long client requests took, headers to the body's last byte.
    pub http_duration: Family<DurationLabels, Histogram>,
    /// Cache outcomes by kind.
    pub cache_events: Family<CacheLabels, Counter>,
    /// Body bytes sent to clients.
    pub served_bytes: Counter,
    /// Of those, bytes sent from files with `sendfile` (plain HTTP/1).
    pub served_zero_copy_bytes: Counter,
    /// Requests sent upstream.
    pub upstream_requests: Family<UpstreamRequestLabels, Counter>,
    /// Body bytes received from upstream.
    pub upstream_bytes: Family<UpstreamLabels, Counter>,
    /// Blob fills that failed verification or broke off.
    pub fill_failures: Family<UpstreamLabels, Counter>,
    /// Circuit-breaker state per mirror: 0 closed, 1 open, 2 half-open.
    pub mirror_state: Family<MirrorLabels, Gauge>,
    /// Blob downloads resumed with a Range request after a break.
    pub resumes: Family<UpstreamLabels, Counter>,
    /// Blobs that could not be cached (no room, or a failing disk).
    pub cache_write_failures: Counter,
    /// Store lookups and reads that failed; the content came from upstream.
    pub cache_read_failures: Counter,
    /// Client connections: open, refused and closed by berth.
    pub connections: ConnectionMetrics,
    /// HTTPS: certificate expiry, loads and failed handshakes.
    pub tls: TlsMetrics,
    /// Several replicas as one cache: Redis, leases, peers.
    pub cluster: ClusterMetrics,
    /// The running totals of `/stats`.
    pub stats: Stats,
    /// Upstream latency, errors and rate-limit headroom; cache gauges.
    pub upstream: UpstreamMetrics,
}

/// Buckets from 1 ms to about 65 s: a cached manifest to a large layer.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of zeroed metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let http_requests = Family::default();
        registry.register(
            "http_requests",
            "Client requests by route and status",
            http_requests.clone(),
        );
        let http_duration = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "Client request durations, from the request to the body's last byte, by route and cache outcome",
            http_duration.clone(),
        );
        let cache_events = Family::default();
        registry.register(
            "cache_events",
            "Cache outcomes: hit, miss, stale, coalesced, revalidated, negative, direct, eager, eager_skipped",
            cache_events.clone(),
        );
        let served_bytes = Counter::default();
        registry.register(
            "served_bytes",
            "Body bytes sent to clients",
            served_bytes.clone(),
        );
        let served_zero_copy_bytes = Counter::default();
        registry.register(
            "served_zero_copy_bytes",
            "Body bytes sent from cache files with sendfile, without copies (plain HTTP/1)",
            served_zero_copy_bytes.clone(),
        );
        let upstream_requests = Family::default();
        registry.register(
            "upstream_requests",
            "Requests sent to upstream registries",
            upstream_requests.clone(),
        );
        let upstream_bytes = Family::default();
        registry.register(
            "upstream_bytes",
            "Blob bytes received from upstream registries",
            upstream_bytes.clone(),
        );
        let fill_failures = Family::default();
        registry.register(
            "fill_failures",
            "Blob downloads that broke off or failed digest verification",
            fill_failures.clone(),
        );
        let mirror_state = Family::default();
        registry.register(
            "upstream_mirror_state",
            "Circuit breaker per mirror: 0 closed, 1 open, 2 half-open",
            mirror_state.clone(),
        );
        let resumes = Family::default();
        registry.register(
            "upstream_resumes",
            "Blob downloads resumed with a Range request after the connection broke",
            resumes.clone(),
        );
        let cache_write_failures = Counter::default();
        registry.register(
            "cache_write_failures",
            "Blobs served without caching because the disk was full or a write failed",
            cache_write_failures.clone(),
        );
        let cache_read_failures = Counter::default();
        registry.register(
            "cache_read_failures",
            "Store lookups or reads that failed; the content was fetched from upstream as if not cached",
            cache_read_failures.clone(),
        );
        let connections = ConnectionMetrics::register(&mut registry);
        let tls = TlsMetrics::register(&mut registry);
        let cluster = ClusterMetrics::register(&mut registry);
        let upstream = UpstreamMetrics::register(&mut registry);
        Self {
            upstream,
            registry,
            tls,
            cluster,
            stats: Stats::default(),
            connections,
            cache_write_failures,
            cache_read_failures,
            mirror_state,
            resumes,
            http_requests,
            http_duration,
            cache_events,
            served_bytes,
            served_zero_copy_bytes,
            upstream_requests,
            upstream_bytes,
            fill_failures,
        }
    }

    /// Count one cache outcome.
    pub fn cache(&self, kind: &'static str, outcome: &'static str) {
        self.cache_events
            .get_or_create(&CacheLabels { kind, outcome })
            .inc();
        // The hit ratio counts what clients were answered with.
        if matches!(kind, "manifest" | "blob") {
            match outcome {
                "hit" | "revalidated" | "stale" => self.stats.cache(true),
                "miss" | "coalesced" | "direct" | "ahead" => self.stats.cache(false),
                _ => {}
            }
        }
    }

    /// Count one upstream request.
    pub fn upstream_request(&self, upstream: &str, kind: &'static str, status: u16) {
        self.upstream_requests
            .get_or_create(&UpstreamRequestLabels {
                upstream: upstream.to_owned(),
                kind,
                status,
            })
            .inc();
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Why berth turned a connection away or closed it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `total` or `per_ip` for refusals; `idle` or `shed` for closes.
    pub reason: &'static str,
}

/// Client connection metrics.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections refused at accept, by the cap that refused them.
    pub refused: Family<ConnectionLabels, Counter>,
    /// Connections berth closed, by reason.
    pub closed: Family<ConnectionLabels, Counter>,
}

impl ConnectionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            m.open.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections refused at accept: reason=total or per_ip (the cap reached)",
            m.refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections berth closed: reason=idle (idle_timeout) or shed (room for a new one)",
            m.closed.clone(),
        );
        m
    }

    /// Count one refused connection.
    pub fn refuse(&self, reason: &'static str) {
        self.refused
            .get_or_create(&ConnectionLabels { reason })
            .inc();
    }

    /// Count one connection berth closed.
    pub fn close(&self, reason: &'static str) {
        self.closed
            .get_or_create(&ConnectionLabels { reason })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_with_labels() {
        let m = Metrics::new();
        m.cache("blob", "hit");
        m.upstream_request("docker.io", "blob", 200);
        let text = m.encode();
        assert!(
            text.contains(r#"berth_cache_events_total{kind="blob",outcome="hit"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"berth_upstream_requests_total{upstream="docker.io",kind="blob",status="200"} 1"#
            ),
            "{text}"
        );
    }
}
