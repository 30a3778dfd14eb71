//! Settings of the cache as a whole (`[cache]`): how many bytes of layers
//! fetched before any client asked for them may be downloading at once.

use crate::checks::Problems;
use crate::file::{RawCache, RawSize};
use crate::fills::parse_size;

/// Default `eager_bytes`: 2 GiB.
const DEFAULT_EAGER_BYTES: u64 = 2 << 30;

/// Settings of the cache as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of eager downloads (layers no client asked for yet) in flight
    /// at once, over every upstream; a layer that would pass it is not
    /// fetched ahead. 0 turns eager downloads off everywhere.
    pub eager_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            eager_bytes: DEFAULT_EAGER_BYTES,
        }
    }
}

pub(super) fn build(p: &mut Problems, raw: Option<&RawCache>) -> CacheSettings {
    let d = CacheSettings::default();
    let Some(raw) = raw else { return d };
    let eager_bytes = match &raw.eager_bytes {
        None => d.eager_bytes,
        Some(RawSize::Bytes(n)) => *n,
        Some(RawSize::Text(text)) => parse_size(text).unwrap_or_else(|| {
            p.add(
                "cache.eager_bytes",
                format!("{text:?} is not a size like \"2GiB\", \"500MB\" or 1048576"),
            );
            d.eager_bytes
        }),
    };
    CacheSettings { eager_bytes }
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
}
