//! The `[server]` table: how berth's own listener treats client
//! connections. Every limit has a default, so a mirror on a network is
//! bounded even with no configuration: connections overall and per client
//! IP, how long a client may take to send its request headers or sit idle,
//! and how many HTTP/2 streams and buffered body bytes one connection may
//! hold.

use crate::checks::{Problems, duration};
use crate::file::RawServer;
use std::time::Duration;

/// Limits on client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open client connections at once; at the cap, the longest-idle
    /// connection is closed to make room, or the new one is refused.
    pub max_connections: u32,
    /// Open connections from one client IP at once.
    pub max_connections_per_ip: u32,
    /// Time a client has to send a request's headers (HTTP/1).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A connection with requests in flight that wrote nothing for this
    /// long (a client that stopped reading) is closed.
    pub stall_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// Streamed body bytes one connection may hold in memory at once,
    /// across all its streams.
    pub connection_buffer: u64,
    /// Streamed body bytes all connections of a listener may hold in
    /// memory at once: what stalled connections can pin, however many.
    pub body_memory: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(120),
            max_streams_per_connection: 64,
            connection_buffer: 4 << 20,
            body_memory: 96 << 20,
        }
    }
}

/// A byte size of at least one streamed chunk (256 KiB), or `default`.
fn at_least_a_chunk(p: &mut Problems, key: &str, text: Option<&str>, default: u64) -> u64 {
    match text.map(byte_size) {
        None => default,
        Some(Ok(n)) if n >= 256 << 10 => n,
        Some(Ok(_)) => {
            p.add(format!("server.{key}"), "must be at least 256KiB");
            default
        }
        Some(Err(e)) => {
            p.add(format!("server.{key}"), e);
            default
        }
    }
}

/// Validate the `[server]` table, reporting every bad key.
pub(super) fn build(p: &mut Problems, raw: Option<&RawServer>) -> ServerLimits {
    let d = ServerLimits::default();
    let Some(raw) = raw else { return d };
    let positive = |p: &mut Problems, key: &str, v: Option<u32>, default: u32| match v {
        Some(0) => {
            p.add(format!("server.{key}"), "must be at least 1");
            default
        }
        Some(v) => v,
        None => default,
    };
    let timeout = |p: &mut Problems, key: &str, v: Option<&str>, default: Duration| {
        let t = duration(p, &format!("server.{key}"), v, default);
        if t.is_zero() {
            p.add(format!("server.{key}"), "must be longer than 0s");
            return default;
        }
        t
    };
    let limits = ServerLimits {
        max_connections: positive(p, "max_connections", raw.max_connections, d.max_connections),
        max_connections_per_ip: positive(
            p,
            "max_connections_per_ip",
            raw.max_connections_per_ip,
            d.max_connections_per_ip,
        ),
        header_read_timeout: timeout(
            p,
            "header_read_timeout",
            raw.header_read_timeout.as_deref(),
            d.header_read_timeout,
        ),
        idle_timeout: timeout(
            p,
            "idle_timeout",
            raw.idle_timeout.as_deref(),
            d.idle_timeout,
        ),
        stall_timeout: timeout(
            p,
            "stall_timeout",
            raw.stall_timeout.as_deref(),
            d.stall_timeout,
        ),
        max_streams_per_connection: positive(
            p,
            "max_streams_per_connection",
            raw.max_streams_per_connection,
            d.max_streams_per_connection,
        ),
        connection_buffer: at_least_a_chunk(
            p,
            "connection_buffer",
            raw.connection_buffer.as_deref(),
            d.connection_buffer,
        ),
        body_memory: at_least_a_chunk(p, "body_memory", raw.body_memory.as_deref(), d.body_memory),
    };
    if limits.max_connections_per_ip > limits.max_connections {
        p.add(
            "server.max_connections_per_ip",
            format!(
                "{} is more than server.max_connections ({})",
                limits.max_connections_per_ip, limits.max_connections
            ),
        );
    }
    limits
}

/// A size such as `4MiB`, `512KiB`, `64GiB`, `1GB` or a plain number of
/// bytes.
pub fn byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"4MiB\" or \"64GiB\""))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(byte_size("4MiB"), Ok(4 << 20));
        assert_eq!(byte_size("64GiB"), Ok(64 << 30));
        assert_eq!(byte_size("1000"), Ok(1000));
        assert_eq!(byte_size("2 GB"), Ok(2_000_000_000));
        assert!(byte_size("4 parsecs").is_err());
        assert!(byte_size("MiB").is_err());
        assert!(byte_size("99999999999TiB").is_err());
    }

    #[test]
    fn every_bad_key_is_reported() {
        let text =
            "[server]\nmax_connections = 0\nidle_timeout = \"soon\"\nconnection_buffer = \"1KiB\"";
        let err = crate::Config::from_toml(text, &|_| None).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.max_connections",
                "server.idle_timeout",
                "server.connection_buffer"
            ]
        );
    }

    #[test]
    fn defaults_apply_without_the_table() {
        let config = crate::Config::from_toml("", &|_| None).unwrap();
        assert_eq!(config.server, ServerLimits::default());
        let config =
            crate::Config::from_toml("[server]\nmax_connections_per_ip = 8", &|_| None).unwrap();
        assert_eq!(config.server.max_connections_per_ip, 8);
    }
}
