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
}

impl ErrorCode {
    /// The wire spelling of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
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
    fn envelope_shape() {
        let json = ErrorEnvelope::new(ErrorCode::BlobUnknown, "no \"such\" blob").to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "no \"such\" blob");
    }
}
