//! Pins: repositories whose manifests and layers are never evicted.
//! A pattern names `upstream/repository`: `*` stands for any characters
//! within one path segment, `**` for any number of segments
//! (`docker.io/library/*`, `ghcr.io/myorg/**`, `docker.io/library/ng*`). A pinned tag keeps every manifest it answers with,
//! the platform manifests of an index, and the config and layers of each:
//! a layer shared with other images stays too.
//!
//! Pins come from the configuration and from `<data_dir>/pins` (one
//! pattern per line), which `berth cache pin` / `unpin` change while berth
//! serves; each eviction pass reads it again.

use crate::catalog::manifest_closure;
use crate::index::Stored;
use crate::{CacheError, Layout, Shelf, TagKey, TagRecord};
use berth_oci::Digest;
use std::collections::HashSet;

/// One pin pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinPattern(Vec<String>);

impl std::fmt::Display for PinPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// The pins kept in the data directory under `layout`, in file order.
/// Lines that are not patterns are skipped; no file is no pins.
pub fn stored_pins(layout: &Layout) -> Result<Vec<PinPattern>, CacheError> {
    let path = layout.pins();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| PinPattern::parse(l.trim()))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CacheError::io("read", &path, e)),
    }
}

/// Replace the pins kept in the data directory under `layout` (written to
/// `tmp/` and renamed into place).
pub fn store_pins(layout: &Layout, pins: &[PinPattern]) -> Result<(), CacheError> {
    let path = layout.pins();
    let tmp = layout.tmp().join(format!("pins-{}", std::process::id()));
    let text: String = pins.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&tmp, text).map_err(|e| CacheError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| CacheError::io("rename", &path, e))
}

impl PinPattern {
    /// Parse `upstream/repository` with `*` and `**` segments; `None` for
    /// an empty pattern or an empty segment.
    pub fn parse(text: &str) -> Option<Self> {
        let segments: Vec<String> = text.split('/').map(str::to_owned).collect();
        (segments.len() >= 2 && segments.iter().all(|s| !s.is_empty())).then_some(Self(segments))
    }

    /// Whether the repository `name` (`upstream/repository`) is pinned.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<&str> = name.split('/').collect();
        matches(&self.0, &name)
    }
}

fn matches(pattern: &[String], name: &[&str]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((p, rest)), _) if p == "**" => {
            (0..=name.len()).any(|skip| matches(rest, &name[skip..]))
        }
        (Some((p, rest)), Some((n, names))) => segment_matches(p, n) && matches(rest, names),
        _ => false,
    }
}

/// One segment against a pattern segment in which `*` stands for any run
/// of characters.
fn segment_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len())
                    .any(|i| text.is_char_boundary(i) && segment_matches(tail, &text[i..]))
        }
    }
}

/// Every blob (manifests included) that a pinned tag in the index under
/// `layout` keeps. Blocking: reads the tag files, and the manifests from
/// `shelf`.
pub(super) fn pinned_blobs(
    layout: &Layout,
    shelf: &dyn Shelf,
    configured: &[PinPattern],
) -> HashSet<Digest> {
    let mut kept = HashSet::new();
    let mut pins = configured.to_vec();
    match stored_pins(layout) {
        Ok(stored) => pins.extend(stored),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stored pins; using the configured ones")
        }
    }
    if pins.is_empty() {
        return kept;
    }
    let Ok(files) = std::fs::read_dir(layout.tags()) else {
        return kept;
    };
    for file in files.flatten() {
        let Ok(bytes) = std::fs::read(file.path()) else {
            continue;
        };
        let Ok(stored) = serde_json::from_slice::<Stored<TagKey, TagRecord>>(&bytes) else {
            continue;
        };
        let name = format!("{}/{}", stored.key.upstream, stored.key.repo);
        if !pins.iter().any(|p| p.matches(&name)) {
            continue;
        }
        for answer in &stored.record.answers {
            if let Ok(digest) = answer.digest.parse() {
                manifest_closure(shelf, digest, &mut kept, 2);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_by_segment() {
        let one = PinPattern::parse("docker.io/library/*").unwrap();
        assert!(one.matches("docker.io/library/nginx"));
        assert!(!one.matches("docker.io/library/a/b"));
        assert!(!one.matches("ghcr.io/library/nginx"));
        let any = PinPattern::parse("ghcr.io/myorg/**").unwrap();
        assert!(any.matches("ghcr.io/myorg/a"));
        assert!(any.matches("ghcr.io/myorg/a/b/c"));
        assert!(!any.matches("ghcr.io/other/a"));
        let part = PinPattern::parse("docker.io/library/ng*x").unwrap();
        assert!(part.matches("docker.io/library/nginx"));
        assert!(!part.matches("docker.io/library/nginy"));
        let exact = PinPattern::parse("quay.io/x/y").unwrap();
        assert!(exact.matches("quay.io/x/y"));
        assert!(!exact.matches("quay.io/x/yz"));
        for bad in ["", "docker.io", "docker.io//x", "/x"] {
            assert_eq!(PinPattern::parse(bad), None, "{bad}");
        }
    }
}
