//! The running totals `/stats` shows (and the dashboard draws): requests,
//! errors, timeouts and bytes, overall and per upstream; the cache's hits
//! and misses, also per minute over the last hour; the repositories asked
//! for most; and the last errors. Kept beside the Prometheus registry,
//! whose families cannot be read back; every table is bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Minutes of hit and miss counts kept.
const MINUTES: usize = 60;
/// Recent errors kept.
const RECENT_ERRORS: usize = 20;
/// Repositories counted at most; past it, new ones are not counted.
const REPOSITORIES: usize = 2048;

/// One finished client request, as `/stats` counts it.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// Its route (`manifest`, `blob`, …).
    pub route: &'a str,
    /// The status it got.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The upstream it was routed to, if any.
    pub upstream: Option<&'a str>,
    /// The repository, if any.
    pub repository: Option<&'a str>,
    /// From the request to the body's last byte.
    pub duration: std::time::Duration,
}

/// Totals of one upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTotals {
    /// Client requests routed to it.
    pub requests: u64,
    /// Of those, answered with a 5xx.
    pub errors: u64,
    /// Body bytes sent to clients for it.
    pub bytes: u64,
}

/// An error answered recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentError {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The status.
    pub status: u16,
    /// The route.
    pub route: String,
    /// `upstream/repository`, when routed.
    pub target: Option<String>,
}

/// Hits and misses of one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Answers from the cache.
    pub hits: u64,
    /// Answers fetched from upstream.
    pub misses: u64,
}

/// One upstream's totals and requests per repository.
type PerUpstream = (UpstreamTotals, HashMap<String, u64>);

/// What `/stats` reads.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    last_timeout_ms: AtomicU64,
    bytes: AtomicU64,
    /// Microseconds, summed over every request counted.
    duration_us: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    minutes: Mutex<VecDeque<Minute>>,
    /// Per upstream: its totals, and requests per repository.
    upstreams: Mutex<HashMap<String, PerUpstream>>,
    /// Repositories counted, over every upstream.
    repositories: AtomicU64,
    recent_errors: Mutex<VecDeque<RecentError>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stats {
    /// Count a finished request.
    pub fn served(&self, s: &Served<'_>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(s.bytes, Ordering::Relaxed);
        let micros = u64::try_from(s.duration.as_micros()).unwrap_or(u64::MAX);
        self.duration_us.fetch_add(micros, Ordering::Relaxed);
        let error = s.status >= 500;
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if s.status == 504 {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            self.last_timeout_ms.store(now_ms(), Ordering::Relaxed);
        }
        if let Some(upstream) = s.upstream {
            // One lock, and no allocation once the upstream and the
            // repository are known.
            let mut upstreams = lock(&self.upstreams);
            if !upstreams.contains_key(upstream) {
                upstreams.insert(upstream.to_owned(), Default::default());
            }
            if let Some((totals, repos)) = upstreams.get_mut(upstream) {
                totals.requests += 1;
                totals.bytes += s.bytes;
                totals.errors += u64::from(error);
                if let Some(repo) = s.repository {
                    if let Some(n) = repos.get_mut(repo) {
                        *n += 1;
                    } else if self.repositories.load(Ordering::Relaxed) < REPOSITORIES as u64 {
                        self.repositories.fetch_add(1, Ordering::Relaxed);
                        repos.insert(repo.to_owned(), 1);
                    }
                }
            }
        }
        if s.status >= 400 {
            let mut recent = lock(&self.recent_errors);
            if recent.len() == RECENT_ERRORS {
                recent.pop_front();
            }
            recent.push_back(RecentError {
                at_ms: now_ms(),
                status: s.status,
                route: s.route.to_owned(),
                target: s.upstream.map(|u| match s.repository {
                    Some(r) => format!("{u}/{r}"),
                    None => u.to_owned(),
                }),
            });
        }
    }

    /// Count a cache answer: `hit` true for one from the cache.
    pub fn cache(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        let minute = now_ms() / 60_000;
        let mut minutes = lock(&self.minutes);
        if minutes.back().is_none_or(|m| m.minute != minute) {
            if minutes.len() == MINUTES {
                minutes.pop_front();
            }
            minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
        }
        if let Some(m) = minutes.back_mut() {
            if hit {
                m.hits += 1;
            } else {
                m.misses += 1;
            }
        }
    }

    /// Requests, errors (5xx), timeouts (504), bytes sent.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The mean duration of the requests counted, in milliseconds.
    pub fn average_duration_ms(&self) -> Option<f64> {
        let requests = self.requests.load(Ordering::Relaxed);
        (requests > 0)
            .then(|| self.duration_us.load(Ordering::Relaxed) as f64 / requests as f64 / 1000.0)
    }

    /// When the last timeout was answered (ms since the epoch), if ever.
    pub fn last_timeout_ms(&self) -> Option<u64> {
        Some(self.last_timeout_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// Cache hits and misses since start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Hits and misses per minute, oldest first, over the last hour (only
    /// minutes with answers).
    pub fn minutes(&self) -> Vec<Minute> {
        let now = now_ms() / 60_000;
        lock(&self.minutes)
            .iter()
            .filter(|m| now.saturating_sub(m.minute) < MINUTES as u64)
            .copied()
            .collect()
    }

    /// Totals per upstream, by name.
    pub fn upstreams(&self) -> Vec<(String, UpstreamTotals)> {
        let mut all: Vec<_> = lock(&self.upstreams)
            .iter()
            .map(|(k, (totals, _))| (k.clone(), totals.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The `n` repositories asked for most, with their request counts.
    pub fn top_repositories(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = lock(&self.upstreams)
            .iter()
            .flat_map(|(upstream, (_, repos))| {
                repos
                    .iter()
                    .map(move |(r, n)| (format!("{upstream}/{r}"), *n))
            })
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// The last errors answered, newest last.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        lock(&self.recent_errors).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_tables_and_bounds() {
        let stats = Stats::default();
        assert_eq!(stats.average_duration_ms(), None);
        for i in 0..30u16 {
            stats.served(&Served {
                route: "blob",
                status: if i % 10 == 0 { 504 } else { 200 },
                bytes: 10,
                upstream: Some("docker.io"),
                repository: Some("library/a"),
                duration: std::time::Duration::from_millis(u64::from(i % 2) * 4),
            });
        }
        assert_eq!(stats.totals(), (30, 3, 3, 300));
        assert_eq!(stats.average_duration_ms(), Some(2.0));
        assert!(stats.last_timeout_ms().is_some());
        assert_eq!(stats.upstreams()[0].1.errors, 3);
        assert_eq!(
            stats.top_repositories(5),
            [("docker.io/library/a".to_owned(), 30)]
        );
        assert_eq!(stats.recent_errors().len(), 3);
        for _ in 0..(RECENT_ERRORS + 5) {
            stats.served(&Served {
                route: "manifest",
                status: 404,
                bytes: 0,
                upstream: None,
                repository: None,
                duration: std::time::Duration::ZERO,
            });
        }
        assert_eq!(stats.recent_errors().len(), RECENT_ERRORS);
        stats.cache(true);
        stats.cache(false);
        stats.cache(true);
        assert_eq!(stats.hits_and_misses(), (2, 1));
        let minutes = stats.minutes();
        assert_eq!(minutes.len(), 1);
        assert_eq!((minutes[0].hits, minutes[0].misses), (2, 1));
    }
}
