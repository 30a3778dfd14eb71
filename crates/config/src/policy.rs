//! The cache policy of one upstream: how long its answers are trusted,
//! what is served when it fails, and what a download from it may take.
//! Kept apart from the transport settings (urls, mirrors, timeouts,
//! credentials), which only the upstream client reads; the pull engine
//! reads only this.

use crate::checks::{Problems, duration};
use crate::file::RawUpstream;
use crate::{DEFAULT_TAG_TTL, FillLimits};
use std::time::Duration;

/// Default `list_ttl`.
const DEFAULT_LIST_TTL: Duration = Duration::from_secs(60);
/// Default `not_found_ttl`.
const DEFAULT_NOT_FOUND_TTL: Duration = Duration::from_secs(30);

/// How berth caches what comes from one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a tag answer is trusted without asking upstream.
    pub tag_ttl: Duration,
    /// How long a tag list or referrers answer is served without asking
    /// upstream.
    pub list_ttl: Duration,
    /// How long upstream's "not found" is remembered.
    pub not_found_ttl: Duration,
    /// Whether a cached manifest is served when upstream says it is gone.
    pub stale_on_not_found: bool,
    /// How often a broken blob download is resumed (the upstream's
    /// `retries`).
    pub resumes: u32,
    /// Limits on blob downloads.
    pub fills: FillLimits,
    /// Whether a manifest fetched from upstream starts downloads of its
    /// config and layers before clients ask for them.
    pub eager_layers: bool,
    /// Platforms (`os/arch` or `os/arch/variant`) whose manifests, and
    /// their layers, are fetched when an index is fetched from upstream.
    pub prefetch_platforms: Vec<String>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            tag_ttl: DEFAULT_TAG_TTL,
            list_ttl: DEFAULT_LIST_TTL,
            not_found_ttl: DEFAULT_NOT_FOUND_TTL,
            stale_on_not_found: false,
            resumes: crate::Resilience::default().retries,
            fills: FillLimits::default(),
            eager_layers: true,
            prefetch_platforms: Vec::new(),
        }
    }
}

/// The policy of the upstream at `key`, reporting every bad value.
pub(super) fn build(
    p: &mut Problems,
    key: &str,
    u: &RawUpstream,
    resilience: &crate::Resilience,
) -> CachePolicy {
    let d = CachePolicy::default();
    CachePolicy {
        tag_ttl: duration(
            p,
            &format!("{key}.tag_ttl"),
            u.tag_ttl.as_deref(),
            d.tag_ttl,
        ),
        list_ttl: duration(
            p,
            &format!("{key}.list_ttl"),
            u.list_ttl.as_deref(),
            d.list_ttl,
        ),
        not_found_ttl: duration(
            p,
            &format!("{key}.not_found_ttl"),
            u.not_found_ttl.as_deref(),
            d.not_found_ttl,
        ),
        stale_on_not_found: u.stale_on_not_found.unwrap_or(d.stale_on_not_found),
        resumes: resilience.retries,
        fills: crate::fills::build(p, key, u, resilience.max_concurrent),
        eager_layers: u.eager_layers.unwrap_or(d.eager_layers),
        prefetch_platforms: platforms(p, key, u.prefetch_platforms.as_deref()),
    }
}

/// `prefetch_platforms`, each `os/arch` or `os/arch/variant` in lowercase
/// letters, digits, `_` and `-`.
fn platforms(p: &mut Problems, key: &str, given: Option<&[String]>) -> Vec<String> {
    let given = given.unwrap_or_default();
    let well_formed = |platform: &str| {
        let parts: Vec<&str> = platform.split('/').collect();
        (2..=3).contains(&parts.len())
            && parts.iter().all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                    })
            })
    };
    for (i, platform) in given.iter().enumerate() {
        if !well_formed(platform) {
            p.add(
                format!("{key}.prefetch_platforms[{i}]"),
                format!("{platform:?} is not a platform like \"linux/amd64\" or \"linux/arm/v7\""),
            );
        }
    }
    given.to_vec()
}
