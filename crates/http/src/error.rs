//! `ApiError`: the only error that becomes a response. Each maps to a
//! status, an OCI error code and a message safe to show a client; the
//! cause of a 5xx is logged, never sent.

use axum::response::{IntoResponse, Response};
use berth_oci::{DigestError, ErrorCode, ErrorEnvelope, NameError};
use berth_pull::PullError;
use berth_upstream::UpstreamError;
use http::{HeaderValue, StatusCode, header};

/// An error answer: status, OCI code, message, and the headers some
/// answers need (`Retry-After`, `Content-Range` of a 416).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    retry_after: Option<u64>,
    /// For a 416: the size of the blob the range missed.
    unsatisfied_size: Option<u64>,
    /// For a 401: ask for a login (`WWW-Authenticate: Basic`).
    pub(crate) login_challenge: bool,
    /// For a 401 in pass-through mode: the bearer challenge that sends the
    /// client to berth's token endpoint.
    pub(crate) bearer_challenge: Option<HeaderValue>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            unsatisfied_size: None,
            login_challenge: false,
            bearer_challenge: None,
        }
    }

    /// A 429 that says how long to wait.
    pub(crate) fn too_many_requests(seconds: u64, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            message,
        );
        e.retry_after = Some(seconds.max(1));
        e
    }

    /// A `Range` outside a blob of `size` bytes.
    pub(crate) fn range_not_satisfiable(size: u64) -> Self {
        let mut e = Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::RangeInvalid,
            "requested range not satisfiable",
        );
        e.unsatisfied_size = Some(size);
        e
    }

    #[allow(clippy::needless_pass_by_value, reason = "a map_err adapter")]
    pub(crate) fn bad_name(e: NameError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameInvalid,
            e.to_string(),
        )
    }

    #[allow(clippy::needless_pass_by_value, reason = "a map_err adapter")]
    pub(crate) fn bad_digest(e: DigestError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            e.to_string(),
        )
    }

    pub(crate) fn bad_reference(e: NameError) -> Self {
        match e {
            NameError::Digest(d) => Self::bad_digest(d),
            other => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ManifestInvalid,
                other.to_string(),
            ),
        }
    }

    pub(crate) fn not_found_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            "no such registry API endpoint (berth serves /v2/<name>/manifests|blobs|tags/list|referrers)",
        )
    }

    pub(crate) fn read_only() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            "berth is a pull-through mirror: only GET and HEAD are supported",
        )
    }

    fn upstream(e: &UpstreamError) -> Self {
        let status = match e {
            UpstreamError::NotFound {
                resource,
                code,
                upstream,
            } => {
                // Upstream may say the whole repository is unknown.
                let code = match code {
                    Some(ErrorCode::NameUnknown) => ErrorCode::NameUnknown,
                    _ => resource.unknown_code(),
                };
                return Self::new(
                    StatusCode::NOT_FOUND,
                    code,
                    format!("{resource} unknown to upstream {upstream}"),
                );
            }
            UpstreamError::Denied {
                upstream, status, ..
            } => {
                return Self::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Denied,
                    format!(
                        "upstream {upstream} refused access ({status}): the repository may not exist, or berth needs credentials for it"
                    ),
                );
            }
            UpstreamError::RateLimited {
                upstream,
                retry_after,
            } => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyRequests,
                    format!("upstream {upstream} is rate-limiting; try again later"),
                );
                e.retry_after = *retry_after;
                return e;
            }
            UpstreamError::Unreachable { upstream, .. } if e.circuit_open() => {
                let mut answer = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    format!(
                        "upstream {upstream} is unreachable; berth is not asking it again until its next probe"
                    ),
                );
                answer.retry_after = e.retry_after().map(|s| s.max(1));
                return answer;
            }
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::Unreachable { .. }
            | UpstreamError::Status { .. }
            | UpstreamError::Invalid { .. } => StatusCode::BAD_GATEWAY,
        };
        let message = match e {
            UpstreamError::Unreachable { upstream, .. } => match e.cause_class() {
                Some(class) => format!("upstream {upstream} is unreachable: {class}"),
                None => format!("upstream {upstream} is unreachable"),
            },
            UpstreamError::Timeout { upstream, .. } => format!("upstream {upstream} timed out"),
            UpstreamError::Busy { upstream, .. } => {
                format!("too many requests are waiting for upstream {upstream}; try again later")
            }
            UpstreamError::Status { upstream, status } => {
                format!("upstream {upstream} failed with status {status}")
            }
            other => other.to_string(),
        };
        Self::new(status, ErrorCode::Unavailable, message)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        let api = Self::upstream(&e);
        if api.status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        api
    }
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        let api = match &e {
            PullError::Upstream(u) => Self::upstream(u),
            PullError::DigestMismatch {
                upstream, expected, ..
            } => Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::Unavailable,
                format!(
                    "upstream {upstream} sent content that does not match {expected}; nothing was cached"
                ),
            ),
            PullError::Unusable { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::Unavailable,
                e.to_string(),
            ),
            PullError::Storage(_) | PullError::NoRoom(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unknown,
                "internal cache error",
            ),
            PullError::Internal(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unknown,
                "internal error",
            ),
        };
        if api.status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope::new(self.code, &self.message).to_json();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.login_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\", charset=\"UTF-8\""),
            );
        }
        if let Some(challenge) = self.bearer_challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(size) = self.unsatisfied_size
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            headers.insert(header::CONTENT_RANGE, v);
        }
        crate::api_headers(headers);
        response
    }
}
