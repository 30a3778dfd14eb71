//! Repository names, tags and manifest references, validated by the grammar
//! of the OCI distribution spec. A name that passes validation can never
//! contain `..`, `%` or any character that means something to a filesystem
//! or URL, because it is only built from `[a-z0-9]` joined by `.`, `_`,
//! `__`, `-` and `/`.

use crate::{Digest, DigestError};
use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted, as distribution enforces.
const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted, per the spec.
const MAX_TAG_LEN: usize = 128;

/// Why a name, tag or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The repository name breaks the spec's grammar.
    #[error(
        "invalid repository name {0:?}: components must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)* separated by '/'"
    )]
    Name(String),
    /// The repository name is too long.
    #[error("repository name is {0} characters long; the limit is 255")]
    NameTooLong(usize),
    /// The tag breaks the spec's grammar.
    #[error("invalid tag {0:?}: tags must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
    /// A reference that looks like a digest but is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A validated repository name such as `library/nginx`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of `/`-separated components.
    pub fn segments(&self) -> usize {
        self.0.split('/').count()
    }

    /// Split off the first component: `ghcr.io/org/img` gives
    /// (`ghcr.io`, `org/img`). `None` when the name has one component.
    pub fn split_first(&self) -> Option<(&str, RepoName)> {
        let (first, rest) = self.0.split_once('/')?;
        Some((first, RepoName(rest.to_owned())))
    }

    /// `prefix/self`, for adding `library/`.
    pub fn with_prefix(&self, prefix: &str) -> Result<RepoName, NameError> {
        format!("{prefix}/{}", self.0).parse()
    }
}

fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(s.len()));
        }
        if s.split('/').all(valid_component) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Name(s.to_owned()))
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A validated tag such as `latest` or `1.27-alpine`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b));
        if first_ok && rest_ok && bytes.len() <= MAX_TAG_LEN {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable content digest.
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Self::Digest(s.parse()?))
        } else {
            Ok(Self::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => t.fmt(f),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "library/nginx",
            "a",
            "ghcr.io/org/img",
            "my_org/my__img",
            "a-b---c/d.e",
            "k8s.gcr.io/pause",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_traversal_and_junk() {
        for bad in [
            "",
            "..",
            "a/../b",
            "a/%2e%2e/b",
            "a/./b",
            "UPPER",
            "a//b",
            "/a",
            "a/",
            "a___b",
            "a.-b",
            "-a",
            "a b",
            "a\\b",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?}");
        }
        assert!(matches!(
            "a".repeat(256).parse::<RepoName>(),
            Err(NameError::NameTooLong(256))
        ));
    }

    proptest::proptest! {
        #[test]
        fn valid_names_are_safe_paths(s in "[a-z0-9._/%-]{0,40}") {
            if let Ok(name) = s.parse::<RepoName>() {
                let n = name.as_str();
                proptest::prop_assert!(!n.contains("..") && !n.contains('%') && !n.contains("//"));
                proptest::prop_assert!(!n.starts_with(['/', '.', '-', '_']) && !n.ends_with('/'));
                proptest::prop_assert_eq!(n.parse::<RepoName>().unwrap(), name.clone());
            }
        }

        #[test]
        fn references_never_panic(s in ".{0,140}") {
            let _ = s.parse::<Reference>();
        }
    }

    #[test]
    fn tags_and_references() {
        assert!("latest".parse::<Tag>().is_ok());
        assert!("_x.Y-1".parse::<Tag>().is_ok());
        assert!(".hidden".parse::<Tag>().is_err());
        assert!("a/b".parse::<Tag>().is_err());
        assert!("x".repeat(129).parse::<Tag>().is_err());
        assert!(matches!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag(_))
        ));
        assert!(matches!(
            "sha256:zz".parse::<Reference>(),
            Err(NameError::Digest(_))
        ));
    }

    #[test]
    fn split_and_prefix() {
        let n: RepoName = "ghcr.io/org/img".parse().unwrap();
        let (first, rest) = n.split_first().unwrap();
        assert_eq!(first, "ghcr.io");
        assert_eq!(rest.as_str(), "org/img");
        let single: RepoName = "nginx".parse().unwrap();
        assert!(single.split_first().is_none());
        assert_eq!(
            single.with_prefix("library").unwrap().as_str(),
            "library/nginx"
        );
    }
}
