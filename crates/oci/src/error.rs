//! OCI distribution error codes and the `{"errors":[...]}` envelope that
//! every error response carries.

use serde::Serialize;

/// The error codes of the OCI distribution spec, plus `UNAVAILABLE`, which
/// distribution uses for a service that cannot answer right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Provided digest did not match uploaded content, or is malformed.
    DigestInvalid,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Requested access to the resource is denied.
    Denied,
    /// Authentication required.
    Unauthorized,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// The range cannot be satisfied.
    RangeInvalid,
    /// The service, or the registry behind it, is unavailable.
    Unavailable,
    /// An unexpected internal error.
    Unknown,
    /// The `n` of a paginated list is not a number.
    PaginationNumberInvalid,
}

impl ErrorCode {
    /// The wire spelling of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::Denied => "DENIED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::RangeInvalid => "RANGE_INVALID",
            Self::Unavailable => "UNAVAILABLE",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl ErrorCode {
    /// The code spelled `wire`, as another registry sends it.
    pub fn from_wire(wire: &str) -> Option<Self> {
        [
            Self::BlobUnknown,
            Self::DigestInvalid,
            Self::ManifestInvalid,
            Self::ManifestUnknown,
            Self::NameInvalid,
            Self::NameUnknown,
            Self::Denied,
            Self::Unauthorized,
            Self::Unsupported,
            Self::TooManyRequests,
            Self::RangeInvalid,
            Self::Unavailable,
            Self::Unknown,
        ]
        .into_iter()
        .find(|c| c.as_str() == wire)
    }
}

/// What a registry request asks for: names it in messages and metrics, and
/// picks the code of its "unknown" answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A manifest, by tag or digest.
    Manifest,
    /// A blob.
    Blob,
    /// A repository's tag list.
    Tags,
    /// The referrers of a manifest.
    Referrers,
}

impl Resource {
    /// Lowercase name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Blob => "blob",
            Self::Tags => "tags",
            Self::Referrers => "referrers",
        }
    }

    /// The error code that says it does not exist.
    pub fn unknown_code(self) -> ErrorCode {
        match self {
            Self::Manifest => ErrorCode::ManifestUnknown,
            Self::Blob => ErrorCode::BlobUnknown,
            Self::Tags | Self::Referrers => ErrorCode::NameUnknown,
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Serialize)]
struct ErrorEntry<'a> {
    code: &'a str,
    message: &'a str,
}

/// The body of every error response: `{"errors":[{"code":..,"message":..}]}`.
#[derive(Debug, Serialize)]
pub struct ErrorEnvelope<'a> {
    errors: [ErrorEntry<'a>; 1],
}

impl<'a> ErrorEnvelope<'a> {
    /// An envelope holding one error.
    pub fn new(code: ErrorCode, message: &'a str) -> Self {
        Self {
            errors: [ErrorEntry {
                code: code.as_str(),
                message,
            }],
        }
    }

    /// Serialised JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from(r#"{"errors":[]}"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_their_wire_spelling() {
        for code in [
            ErrorCode::BlobUnknown,
            ErrorCode::NameUnknown,
            ErrorCode::TooManyRequests,
        ] {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_wire("name_unknown"), None);
        assert_eq!(Resource::Tags.unknown_code(), ErrorCode::NameUnknown);
        assert_eq!(Resource::Blob.to_string(), "blob");
    }

    #[test]
    fn envelope_shape() {
        let json = ErrorEnvelope::new(ErrorCode::BlobUnknown, "no \"such\" blob").to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "no \"such\" blob");
    }
}
