//! Per-upstream limits on blob downloads ("fills") that outlive their
//! clients: the largest blob berth downloads, and how many fills with no
//! client waiting may go on holding upstream request slots.

use crate::checks::Problems;
use crate::file::{RawSize, RawUpstream};

/// Default largest blob: 64 GiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 64 << 30;

/// Limits on blob downloads from one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillLimits {
    /// Largest blob downloaded, in bytes: a larger declared size is refused,
    /// and a body that grows past it is cut off and not cached.
    pub max_blob_size: u64,
    /// Downloads that may go on with no client waiting for them, each
    /// holding one of the upstream's `max_concurrent` slots; further ones
    /// stop when their last client leaves.
    pub unattended_fills: u32,
}

impl Default for FillLimits {
    fn default() -> Self {
        Self {
            max_blob_size: DEFAULT_MAX_BLOB_SIZE,
            unattended_fills: unattended_share(64),
        }
    }
}

/// A quarter of the upstream's slots, at least one.
fn unattended_share(max_concurrent: u32) -> u32 {
    (max_concurrent / 4).max(1)
}

/// Bytes in `text`: digits, then optionally `B`, `KB`, `MB`, `GB`, `TB`
/// (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(scale)
}

pub(super) fn build(
    p: &mut Problems,
    key: &str,
    u: &RawUpstream,
    max_concurrent: u32,
) -> FillLimits {
    let max_blob_size = match &u.max_blob_size {
        None => DEFAULT_MAX_BLOB_SIZE,
        Some(RawSize::Bytes(n)) => *n,
        Some(RawSize::Text(text)) => parse_size(text).unwrap_or_else(|| {
            p.add(
                format!("{key}.max_blob_size"),
                format!("{text:?} is not a size like \"64GiB\", \"500MB\" or 1048576"),
            );
            DEFAULT_MAX_BLOB_SIZE
        }),
    };
    if max_blob_size == 0 {
        p.add(format!("{key}.max_blob_size"), "must be larger than zero");
    }
    let unattended_fills = u
        .unattended_fills
        .unwrap_or_else(|| unattended_share(max_concurrent));
    if unattended_fills > max_concurrent {
        p.add(
            format!("{key}.unattended_fills"),
            format!("{unattended_fills} is more than max_concurrent ({max_concurrent})"),
        );
    }
    FillLimits {
        max_blob_size,
        unattended_fills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64GiB"), Some(64 << 30));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("8 MiB"), Some(8 << 20));
        for bad in ["", "GiB", "12 parsecs", "-1", "99999999999TiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn fill_limits_have_defaults_and_name_bad_keys() {
        let c = Config::from_toml(
            "[[upstreams]]\nname = \"a.test\"\nurl = \"http://127.0.0.1:9\"\nmax_concurrent = 10\n",
            &no_env,
        )
        .unwrap();
        let a = c.upstream("a.test").unwrap();
        assert_eq!(a.policy.fills.max_blob_size, 64 << 30);
        assert_eq!(a.policy.fills.unattended_fills, 2);
        let c = Config::from_toml(
            "[[upstreams]]\nname = \"a.test\"\nurl = \"http://127.0.0.1:9\"\nmax_blob_size = \"8MiB\"\nunattended_fills = 3\n",
            &no_env,
        )
        .unwrap();
        let a = c.upstream("a.test").unwrap();
        assert_eq!(a.policy.fills.max_blob_size, 8 << 20);
        assert_eq!(a.policy.fills.unattended_fills, 3);
        let e = Config::from_toml(
            "[[upstreams]]\nname = \"a.test\"\nurl = \"http://127.0.0.1:9\"\nmax_blob_size = \"lots\"\nmax_concurrent = 2\nunattended_fills = 3\n",
            &no_env,
        )
        .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"upstreams[0].max_blob_size"), "{e}");
        assert!(keys.contains(&"upstreams[0].unattended_fills"), "{e}");
    }
}
