//! Upstream metrics beside the request and byte counters: how long each
//! upstream takes to answer (a histogram per kind of request), its errors
//! and timeouts by kind, and the pulls Docker Hub says are left
//! (`ratelimit-remaining`); and the gauges of what the cache holds and
//! downloads now.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Configured upstream name.
    pub upstream: String,
    /// `manifest`, `blob`, `tags`, `referrers`.
    pub kind: &'static str,
}

/// Labels of upstream errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Configured upstream name.
    pub upstream: String,
    /// `timeout`, `unreachable`, `status`, `invalid`, `denied`,
    /// `rate_limited`, `busy`, `not_found`.
    pub error: &'static str,
}

/// Labels naming an upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    /// Configured upstream name.
    pub upstream: String,
}

/// Upstream latency, errors and rate-limit headroom; cache gauges.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    /// Seconds from sending a request to its response headers.
    pub latency: Family<LatencyLabels, Histogram>,
    /// Requests that failed, by upstream and kind of failure.
    pub errors: Family<ErrorLabels, Counter>,
    /// Pulls left in the current window, as the upstream's
    /// `ratelimit-remaining` header last said (Docker Hub).
    pub ratelimit_remaining: Family<NameLabels, Gauge>,
    /// Bytes the blob store holds (once counted; see `/stats`).
    pub cache_size_bytes: Gauge,
    /// The store's size cap in bytes (0: unbounded).
    pub cache_cap_bytes: Gauge,
    /// Blob downloads running.
    pub fills_in_flight: Gauge,
}

fn latency_histogram() -> Histogram {
    // 5 ms to about 40 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl UpstreamMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            ratelimit_remaining: Family::default(),
            cache_size_bytes: Gauge::default(),
            cache_cap_bytes: Gauge::default(),
            fills_in_flight: Gauge::default(),
        };
        registry.register(
            "upstream_response_seconds",
            "Seconds from a request to an upstream to its response headers",
            m.latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream requests that failed, by kind of failure",
            m.errors.clone(),
        );
        registry.register(
            "upstream_ratelimit_remaining",
            "Pulls left in the window, as the upstream's ratelimit-remaining header last said",
            m.ratelimit_remaining.clone(),
        );
        registry.register(
            "cache_size_bytes",
            "Bytes the blob store holds (0 until counted: with max_size or max_age)",
            m.cache_size_bytes.clone(),
        );
        registry.register(
            "cache_cap_bytes",
            "The blob store's size cap in bytes (0: unbounded)",
            m.cache_cap_bytes.clone(),
        );
        registry.register(
            "fills_in_flight",
            "Blob downloads from upstream running now",
            m.fills_in_flight.clone(),
        );
        m
    }
}
