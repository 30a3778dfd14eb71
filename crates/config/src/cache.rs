//! Settings of the cache as a whole (`[cache]`): the size cap and age limit
//! that keep the disk store bounded, the repositories pinned against them,
//! and how many bytes of layers fetched before any client asked for them
//! may be downloading at once, and the list of images warmed on a schedule.

use crate::checks::{Problems, duration};
use crate::file::{RawCache, RawSize};
use crate::fills::parse_size;
use std::time::Duration;

/// Default `prefetch_interval`.
const DEFAULT_PREFETCH_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Default `eager_bytes`: 2 GiB.
const DEFAULT_EAGER_BYTES: u64 = 2 << 30;

/// Settings of the cache as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of eager downloads (layers no client asked for yet) in flight
    /// at once, over every upstream; a layer that would pass it is not
    /// fetched ahead. 0 turns eager downloads off everywhere.
    pub eager_bytes: u64,
    /// Bytes on disk the blob store is kept under, evicting the least
    /// recently used; `None`: unbounded.
    pub max_size: Option<u64>,
    /// Blobs nobody used for this long are evicted; `None`: no limit.
    pub max_age: Option<Duration>,
    /// `upstream/repository` patterns (`*` one segment, `**` any) whose
    /// manifests and layers are never evicted.
    pub pin: Vec<String>,
    /// Image references (one per line) the server warms at start and
    /// every `prefetch_interval`.
    pub prefetch_file: Option<std::path::PathBuf>,
    /// How often `prefetch_file` is warmed.
    pub prefetch_interval: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            eager_bytes: DEFAULT_EAGER_BYTES,
            max_size: None,
            max_age: None,
            pin: Vec::new(),
            prefetch_file: None,
            prefetch_interval: DEFAULT_PREFETCH_INTERVAL,
        }
    }
}

/// A size at `key`, or the problem with it.
pub(crate) fn size(p: &mut Problems, key: &str, raw: &RawSize) -> Option<u64> {
    match raw {
        RawSize::Bytes(n) => Some(*n),
        RawSize::Text(text) => parse_size(text).or_else(|| {
            p.add(
                key,
                format!("{text:?} is not a size like \"2GiB\", \"500MB\" or 1048576"),
            );
            None
        }),
    }
}

/// Whether `pattern` is `upstream/repository` with no empty segment.
fn well_formed_pin(pattern: &str) -> bool {
    let segments: Vec<&str> = pattern.split('/').collect();
    segments.len() >= 2 && segments.iter().all(|s| !s.is_empty())
}

pub(super) fn build(p: &mut Problems, raw: Option<&RawCache>) -> CacheSettings {
    let d = CacheSettings::default();
    let Some(raw) = raw else { return d };
    let eager_bytes = raw
        .eager_bytes
        .as_ref()
        .and_then(|r| size(p, "cache.eager_bytes", r))
        .unwrap_or(d.eager_bytes);
    let max_size = raw
        .max_size
        .as_ref()
        .and_then(|r| size(p, "cache.max_size", r));
    if max_size == Some(0) {
        p.add("cache.max_size", "must be larger than zero");
    }
    let max_age = raw
        .max_age
        .as_deref()
        .map(|text| duration(p, "cache.max_age", Some(text), Duration::ZERO))
        .filter(|age| !age.is_zero());
    let pin = raw.pin.clone().unwrap_or_default();
    for (i, pattern) in pin.iter().enumerate() {
        if !well_formed_pin(pattern) {
            p.add(
                format!("cache.pin[{i}]"),
                format!("{pattern:?} is not a pattern like \"docker.io/library/*\" or \"ghcr.io/myorg/**\""),
            );
        }
    }
    let prefetch_interval = duration(
        p,
        "cache.prefetch_interval",
        raw.prefetch_interval.as_deref(),
        d.prefetch_interval,
    );
    if prefetch_interval.is_zero() {
        p.add("cache.prefetch_interval", "must be longer than zero");
    }
    CacheSettings {
        eager_bytes,
        max_size,
        max_age,
        pin,
        prefetch_file: raw.prefetch_file.as_deref().map(std::path::PathBuf::from),
        prefetch_interval,
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const UPSTREAM: &str = "[[upstreams]]\nname = \"a.test\"\nurl = \"http://127.0.0.1:9\"\n";

    #[test]
    fn eager_settings_have_defaults_and_name_bad_values() {
        let c = Config::from_toml(UPSTREAM, &no_env).unwrap();
        assert_eq!(c.cache.eager_bytes, 2 << 30);
        let a = c.upstream("a.test").unwrap();
        assert!(a.policy.eager_layers);
        assert!(a.policy.prefetch_platforms.is_empty());
        let c = Config::from_toml(
            &format!("[cache]\neager_bytes = \"256MiB\"\n{UPSTREAM}eager_layers = false\nprefetch_platforms = [\"linux/amd64\", \"linux/arm/v7\"]\n"),
            &no_env,
        )
        .unwrap();
        assert_eq!(c.cache.eager_bytes, 256 << 20);
        let a = c.upstream("a.test").unwrap();
        assert!(!a.policy.eager_layers);
        assert_eq!(a.policy.prefetch_platforms, ["linux/amd64", "linux/arm/v7"]);
        let e = Config::from_toml(
            &format!("[cache]\neager_bytes = \"lots\"\n{UPSTREAM}prefetch_platforms = [\"linux\", \"Linux/AMD64\"]\n"),
            &no_env,
        )
        .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cache.eager_bytes",
                "upstreams[0].prefetch_platforms[0]",
                "upstreams[0].prefetch_platforms[1]"
            ],
            "{e}"
        );
    }

    #[test]
    fn lifecycle_settings_are_off_by_default_and_checked() {
        let c = Config::from_toml(UPSTREAM, &no_env).unwrap();
        assert_eq!((c.cache.max_size, c.cache.max_age), (None, None));
        let c = Config::from_toml(
            &format!("[cache]\nmax_size = \"200GiB\"\nmax_age = \"30d\"\npin = [\"docker.io/library/*\", \"ghcr.io/myorg/**\"]\n{UPSTREAM}"),
            &no_env,
        )
        .unwrap();
        assert_eq!(c.cache.max_size, Some(200 << 30));
        assert_eq!(
            c.cache.max_age,
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        assert_eq!(c.cache.pin.len(), 2);
        let e = Config::from_toml(
            &format!(
                "[cache]\nmax_size = \"big\"\nmax_age = \"soon\"\npin = [\"nginx\"]\n{UPSTREAM}"
            ),
            &no_env,
        )
        .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["cache.max_size", "cache.max_age", "cache.pin[0]"],
            "{e}"
        );
    }
}
