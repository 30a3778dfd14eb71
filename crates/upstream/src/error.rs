//! The upstream error type: what went wrong talking to a registry, and
//! whether that is an outage (worth serving stale content or retrying) or a
//! definite answer.

use berth_oci::{ErrorCode, Resource};

/// Why an upstream request failed. Cheap to clone, so one failure can be
/// handed to every client waiting on the same fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made, or berth did not even try because
    /// every mirror's circuit breaker is open (see
    /// [`UpstreamError::circuit_open`]).
    #[error("upstream {upstream} is unreachable: {detail}")]
    Unreachable {
        /// Upstream name.
        upstream: String,
        /// The transport error, or why berth did not ask.
        detail: String,
        /// Set when berth did not ask because every mirror's circuit
        /// breaker is open: seconds until one may be probed again.
        circuit_open_for: Option<u64>,
    },
    /// The upstream did not answer in time.
    #[error("upstream {upstream} timed out: {detail}")]
    Timeout {
        /// Upstream name.
        upstream: String,
        /// What timed out.
        detail: String,
    },
    /// The upstream answered 404.
    #[error("upstream {upstream} has no such {resource}")]
    NotFound {
        /// Upstream name.
        upstream: String,
        /// What was asked for.
        resource: Resource,
        /// The OCI code upstream sent, if it sent a known one.
        code: Option<ErrorCode>,
    },
    /// The upstream refused berth's credentials or anonymous access.
    #[error("upstream {upstream} denied access ({status}): {detail}")]
    Denied {
        /// Upstream name.
        upstream: String,
        /// 401 or 403.
        status: u16,
        /// Upstream's message or the auth step that failed.
        detail: String,
    },
    /// The upstream rate-limited berth.
    #[error("upstream {upstream} rate-limited the request")]
    RateLimited {
        /// Upstream name.
        upstream: String,
        /// Seconds upstream asked to wait, if it said.
        retry_after: Option<u64>,
    },
    /// The upstream answered with an error status.
    #[error("upstream {upstream} answered {status}")]
    Status {
        /// Upstream name.
        upstream: String,
        /// The HTTP status.
        status: u16,
    },
    /// Too many requests were already waiting for this upstream.
    #[error("upstream {upstream} is busy: no request slot freed within {waited:?}")]
    Busy {
        /// Upstream name.
        upstream: String,
        /// How long the request waited.
        waited: std::time::Duration,
    },
    /// The upstream's answer was malformed.
    #[error("upstream {upstream} sent an invalid answer: {detail}")]
    Invalid {
        /// Upstream name.
        upstream: String,
        /// What was wrong.
        detail: String,
    },
}

impl UpstreamError {
    /// The kind of failure, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::NotFound { .. } => "not_found",
            Self::Denied { .. } => "denied",
            Self::RateLimited { .. } => "rate_limited",
            Self::Status { .. } => "status",
            Self::Busy { .. } => "busy",
            Self::Invalid { .. } => "invalid",
        }
    }

    /// Whether upstream is down or overloaded rather than giving a definite
    /// answer: connection errors, timeouts, 5xx and 429. These are the
    /// failures for which cached content may be served stale.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::RateLimited { .. }
            | Self::Busy { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::NotFound { .. } | Self::Denied { .. } | Self::Invalid { .. } => false,
        }
    }

    /// Whether berth answered without asking upstream because every
    /// mirror's circuit breaker is open: the upstream is known to be down.
    /// Callers serve from cache when they can, else answer at once with a
    /// 503 and [`UpstreamError::retry_after`].
    pub fn circuit_open(&self) -> bool {
        matches!(
            self,
            Self::Unreachable {
                circuit_open_for: Some(_),
                ..
            }
        )
    }

    /// Seconds a client should wait before asking again, when known: what
    /// upstream asked for with a 429, or while every circuit is open, the
    /// time until the next probe.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            Self::Unreachable {
                circuit_open_for, ..
            } => *circuit_open_for,
            _ => None,
        }
    }

    /// Whether another attempt may succeed: every outage except berth's
    /// own queue being full (retrying would only queue again) and an open
    /// circuit (berth decided not to ask).
    pub(crate) fn retryable(&self) -> bool {
        self.is_outage() && !matches!(self, Self::Busy { .. }) && !self.circuit_open()
    }

    /// What kind of failure made the upstream unreachable, for the
    /// client's message: a name that did not resolve, a refused or reset
    /// connection, a TLS handshake that failed. `None` when the transport
    /// did not say.
    pub fn cause_class(&self) -> Option<&'static str> {
        let Self::Unreachable { detail, .. } = self else {
            return None;
        };
        let detail = detail.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| detail.contains(w));
        Some(
            if has(&[
                "dns error",
                "failed to lookup address",
                "name or service not known",
            ]) {
                "DNS lookup failed"
            } else if has(&["certificate", "tls", "handshake", "ssl"]) {
                "TLS failed"
            } else if has(&["connection refused"]) {
                "connection refused"
            } else if has(&["connection reset", "broken pipe", "connection closed"]) {
                "connection reset"
            } else if has(&[
                "tcp connect error",
                "network is unreachable",
                "no route to host",
            ]) {
                "connect failed"
            } else {
                return None;
            },
        )
    }

    pub(crate) fn from_transport(upstream: &str, e: &reqwest::Error) -> Self {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        if e.is_timeout() {
            Self::Timeout {
                upstream: upstream.to_owned(),
                detail,
            }
        } else {
            Self::Unreachable {
                upstream: upstream.to_owned(),
                detail,
                circuit_open_for: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_upstream_says_what_kind_of_failure() {
        let down = |detail: &str| UpstreamError::Unreachable {
            upstream: "u".into(),
            detail: detail.into(),
            circuit_open_for: None,
        };
        let class = |detail: &str| down(detail).cause_class();
        assert_eq!(
            class(
                "error sending request: client error (Connect): dns error: failed to lookup address information"
            ),
            Some("DNS lookup failed")
        );
        assert_eq!(
            class("client error (Connect): tcp connect error: Connection refused (os error 111)"),
            Some("connection refused")
        );
        assert_eq!(
            class("invalid peer certificate: UnknownIssuer"),
            Some("TLS failed")
        );
        assert_eq!(class("connection reset by peer"), Some("connection reset"));
        assert_eq!(class("something else"), None);
    }

    #[test]
    fn an_open_circuit_is_an_outage_with_a_retry_time_and_no_retry() {
        let open = UpstreamError::Unreachable {
            upstream: "a.io".into(),
            detail: "not asked".into(),
            circuit_open_for: Some(12),
        };
        assert!(open.circuit_open() && open.is_outage() && !open.retryable());
        assert_eq!(open.retry_after(), Some(12));
        let down = UpstreamError::Unreachable {
            upstream: "a.io".into(),
            detail: "connection refused".into(),
            circuit_open_for: None,
        };
        assert!(!down.circuit_open() && down.retryable());
        assert_eq!(down.retry_after(), None);
        let limited = UpstreamError::RateLimited {
            upstream: "a.io".into(),
            retry_after: Some(3),
        };
        assert_eq!(limited.retry_after(), Some(3));
        assert!(!limited.circuit_open());
    }
}
