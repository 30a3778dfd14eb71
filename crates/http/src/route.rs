//! Parsing of the raw `/v2/...` path into a typed endpoint. Repository
//! names contain `/`, so the path is split at its last known marker
//! (`/manifests/`, `/blobs/`, `/tags/list`, `/referrers/`). The raw,
//! undecoded path is parsed: a percent sign or `..` can never pass the name
//! and digest grammars, so nothing is ever decoded into a filesystem path.

use crate::error::ApiError;
use berth_oci::{Digest, Reference, RepoName};

/// What a `/v2/<name>/...` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/manifests/<reference>`
    Manifest(Reference),
    /// `/blobs/<digest>`
    Blob(Digest),
    /// `/blobs/uploads/` (a new upload) or `/blobs/uploads/<session>`:
    /// pushing, forwarded only where push is on.
    Upload(Option<String>),
    /// `/tags/list`
    Tags,
    /// `/referrers/<digest>`
    Referrers(Digest),
}

impl Endpoint {
    /// Short route name for logs and metrics.
    pub(crate) fn route(&self) -> &'static str {
        match self {
            Self::Manifest(_) => "manifest",
            Self::Blob(_) => "blob",
            Self::Upload(_) => "upload",
            Self::Tags => "tags",
            Self::Referrers(_) => "referrers",
        }
    }

    /// The endpoint as a path below the repository, in one spelling
    /// (`manifests/latest`, `blobs/sha256:…`), for the access rules.
    pub(crate) fn path(&self) -> String {
        match self {
            Self::Manifest(reference) => format!("manifests/{reference}"),
            Self::Blob(digest) => format!("blobs/{digest}"),
            Self::Upload(None) => "blobs/uploads/".to_owned(),
            Self::Upload(Some(session)) => format!("blobs/uploads/{session}"),
            Self::Tags => "tags/list".to_owned(),
            Self::Referrers(digest) => format!("referrers/{digest}"),
        }
    }
}

/// A parsed `/v2/` request path: the repository as the client named it and
/// the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) name: RepoName,
    pub(crate) endpoint: Endpoint,
}

/// Longest upload session id accepted.
const MAX_SESSION: usize = 256;

/// An upload session id as upstream made it up: letters, digits and
/// `-._~=`, at most 256 of them (a UUID, for distribution).
fn upload_session(id: &str) -> Result<String, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SESSION
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~=".contains(&b));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(ApiError::not_found_route())
    }
}

/// Parse the part of the path after `/v2/`.
pub(crate) fn parse(rest: &str) -> Result<Route, ApiError> {
    let (name, endpoint) = if let Some(i) = rest.rfind("/blobs/uploads") {
        let tail = &rest[i + "/blobs/uploads".len()..];
        let session = match tail.strip_prefix('/') {
            _ if tail.is_empty() => None,
            Some("") => None,
            Some(id) => Some(upload_session(id)?),
            None => return Err(ApiError::not_found_route()),
        };
        (&rest[..i], Endpoint::Upload(session))
    } else if let Some(name) = rest.strip_suffix("/tags/list") {
        (name, Endpoint::Tags)
    } else if let Some((name, r)) = rest.rsplit_once("/manifests/") {
        let reference = r.parse::<Reference>().map_err(ApiError::bad_reference)?;
        (name, Endpoint::Manifest(reference))
    } else if let Some((name, d)) = rest.rsplit_once("/blobs/") {
        (
            name,
            Endpoint::Blob(d.parse().map_err(ApiError::bad_digest)?),
        )
    } else if let Some((name, d)) = rest.rsplit_once("/referrers/") {
        (
            name,
            Endpoint::Referrers(d.parse().map_err(ApiError::bad_digest)?),
        )
    } else {
        return Err(ApiError::not_found_route());
    };
    let name = name.parse::<RepoName>().map_err(ApiError::bad_name)?;
    Ok(Route { name, endpoint })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::ErrorCode;

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_every_endpoint() {
        let r = parse("ghcr.io/org/img/manifests/v1.2").unwrap();
        assert_eq!(r.name.as_str(), "ghcr.io/org/img");
        assert_eq!(
            r.endpoint,
            Endpoint::Manifest(Reference::Tag("v1.2".parse().unwrap()))
        );
        let r = parse(&format!("library/x/blobs/{D}")).unwrap();
        assert_eq!(r.endpoint, Endpoint::Blob(D.parse().unwrap()));
        assert_eq!(parse("a/tags/list").unwrap().endpoint, Endpoint::Tags);
        assert_eq!(
            parse("a/blobs/uploads/").unwrap().endpoint,
            Endpoint::Upload(None)
        );
        assert_eq!(
            parse("a/blobs/uploads/123").unwrap().endpoint,
            Endpoint::Upload(Some("123".into()))
        );
        for bad in [
            "a/blobs/uploads/x/y",
            "a/blobs/uploads/..%2f",
            "a/blobs/uploadsx",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&format!("a/referrers/{D}")).unwrap().endpoint,
            Endpoint::Referrers(D.parse().unwrap())
        );
        // A repository may itself be called "manifests".
        assert_eq!(
            parse("manifests/manifests/latest").unwrap().name.as_str(),
            "manifests"
        );
    }

    #[test]
    fn refuses_bad_input_with_codes() {
        assert_eq!(
            parse("Bad/manifests/latest").unwrap_err().code,
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse("a/../b/manifests/latest").unwrap_err().code,
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse("a/%2e%2e/b/manifests/latest").unwrap_err().code,
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse("a/blobs/sha256:../../x").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            parse("a/blobs/sha256%3a00").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            parse("a/manifests/sha256:abc").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            parse("a/manifests/bad/tag").unwrap_err().code,
            ErrorCode::ManifestInvalid
        );
        assert_eq!(parse("a/unknown").unwrap_err().status.as_u16(), 404);
    }
}
