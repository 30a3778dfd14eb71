//! Per-upstream resilience settings: extra mirror URLs, timeouts, retries,
//! the concurrency cap and how misses are remembered. Defaults suit a slow
//! link: a download that makes progress is never cut by a total-time limit.

use crate::checks::{Problems, duration, parse_url};
use crate::file::RawUpstream;
use std::time::Duration;

/// How berth copes with a slow, flaky or overloaded upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resilience {
    /// More base URLs serving the same content as `url`, tried by health.
    pub mirrors: Vec<url::Url>,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit from sending a request to its response headers.
    pub header_timeout: Duration,
    /// Limit on silence between two body chunks.
    pub idle_timeout: Duration,
    /// Extra attempts after a failure a retry can fix.
    pub retries: u32,
    /// Requests in flight to this upstream at once.
    pub max_concurrent: u32,
    /// How long a request may wait for one of those slots.
    pub queue_timeout: Duration,
    /// Limit for a whole manifest, tag list or token answer, from sending
    /// the request to its last byte, however steadily it trickles in.
    pub manifest_timeout: Duration,
    /// Limit for one client request to get an answer from upstream, across
    /// every attempt, failover and backoff (the wait for a request slot
    /// excluded). Shorter than clients' own limits, so they get an error
    /// (or cached content) before they give up.
    pub request_deadline: Duration,
}

impl Default for Resilience {
    fn default() -> Self {
        Self {
            mirrors: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            retries: 3,
            max_concurrent: 64,
            queue_timeout: Duration::from_secs(30),
            manifest_timeout: Duration::from_secs(30),
            request_deadline: Duration::from_secs(20),
        }
    }
}

/// The most retries an upstream may be given.
pub(super) const MAX_RETRIES: u32 = 10;

pub(super) fn build(p: &mut Problems, key: &str, u: &RawUpstream) -> Resilience {
    let d = Resilience::default();
    let mut dur = |field: &str, value: &Option<String>, default: Duration| {
        let v = duration(p, &format!("{key}.{field}"), value.as_deref(), default);
        if v.is_zero() {
            p.add(format!("{key}.{field}"), "must be longer than zero");
        }
        v
    };
    let connect_timeout = dur("connect_timeout", &u.connect_timeout, d.connect_timeout);
    let header_timeout = dur("header_timeout", &u.header_timeout, d.header_timeout);
    let idle_timeout = dur("idle_timeout", &u.idle_timeout, d.idle_timeout);
    let queue_timeout = dur("queue_timeout", &u.queue_timeout, d.queue_timeout);
    let manifest_timeout = dur("manifest_timeout", &u.manifest_timeout, d.manifest_timeout);
    let request_deadline = dur("request_deadline", &u.request_deadline, d.request_deadline);
    let mirrors = u
        .mirrors
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, m)| parse_url(p, &format!("{key}.mirrors[{i}]"), m))
        .collect();
    let max_concurrent = u.max_concurrent.unwrap_or(d.max_concurrent);
    if max_concurrent == 0 {
        p.add(format!("{key}.max_concurrent"), "must be at least 1");
    }
    if u.retries.is_some_and(|r| r > MAX_RETRIES) {
        p.add(
            format!("{key}.retries"),
            format!(
                "more than {MAX_RETRIES} retries only hides an outage; use at most {MAX_RETRIES}"
            ),
        );
    }
    Resilience {
        mirrors,
        connect_timeout,
        header_timeout,
        idle_timeout,
        retries: u.retries.unwrap_or(d.retries),
        max_concurrent,
        queue_timeout,
        manifest_timeout,
        request_deadline,
    }
}

/// A warning for each per-attempt timeout set (by the file or a seed
/// variable) away from its default and longer than `request_deadline`,
/// which then cuts every request first, so that the longer timeout only
/// ever applies to downloads nobody waits for. The defaults themselves
/// are longer on purpose: they bound such downloads.
pub(super) fn cut_short(name: &str, r: &Resilience) -> Vec<String> {
    let d = Resilience::default();
    [
        ("connect_timeout", r.connect_timeout, d.connect_timeout),
        ("header_timeout", r.header_timeout, d.header_timeout),
        ("manifest_timeout", r.manifest_timeout, d.manifest_timeout),
    ]
    .into_iter()
    .filter(|(_, value, default)| value != default && *value > r.request_deadline)
    .map(|(field, value, _)| {
        format!(
            "upstream {name}: {field} ({value:?}) is longer than request_deadline ({:?}), which ends every client's request first; raise request_deadline too",
            r.request_deadline
        )
    })
    .collect()
}
