//! The upstream error type: what went wrong talking to a registry, and
//! whether that is an outage (worth serving stale content or retrying) or a
//! definite answer.

/// Why an upstream request failed. Cheap to clone, so one failure can be
/// handed to every client waiting on the same fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made.
    #[error("upstream {upstream} is unreachable: {detail}")]
    Unreachable {
        /// Upstream name.
        upstream: String,
        /// The transport error.
        detail: String,
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
    #[error("upstream {upstream} has no such {what}")]
    NotFound {
        /// Upstream name.
        upstream: String,
        /// What was asked for, such as `manifest` or `blob`.
        what: &'static str,
        /// The OCI code upstream sent, if any.
        code: Option<String>,
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

    /// Whether another attempt may succeed: every outage except berth's
    /// own queue being full (retrying would only queue again).
    pub(crate) fn retryable(&self) -> bool {
        self.is_outage() && !matches!(self, Self::Busy { .. })
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
            }
        }
    }
}
