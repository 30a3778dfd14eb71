//! The on-disk TOML shape: every key optional. Reading it (unknown keys,
//! wrong types) is `parse.rs`.

use crate::LogFormat;
use serde::Deserialize;

/// The file as written, before defaults and validation (read key by key
/// in `parse.rs`).
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<String>,
    pub(super) domain: Option<String>,
    pub(super) url302: Option<String>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) log_level: Option<String>,
    pub(super) builtin_upstreams: Option<bool>,
    pub(super) server: Option<RawServer>,
    pub(super) cache: Option<RawCache>,
    pub(super) storage: Option<RawStorage>,
    pub(super) cluster: Option<RawCluster>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) tls: Option<RawTls>,
    pub(super) auth: Option<RawAuth>,
    pub(super) limits: Option<RawLimits>,
    pub(super) access: Option<RawAccess>,
    pub(super) upstreams: Vec<RawUpstream>,
}

/// One `[[upstreams]]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawUpstream {
    pub(super) name: Option<String>,
    pub(super) url: Option<String>,
    pub(super) default: Option<bool>,
    pub(super) auto_library: Option<bool>,
    pub(super) host_prefix: Option<String>,
    pub(super) aliases: Option<Vec<String>>,
    pub(super) realm_hosts: Option<Vec<String>>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) auth_mode: Option<String>,
    pub(super) push: Option<bool>,
    pub(super) private_network: Option<bool>,
    pub(super) tag_ttl: Option<String>,
    pub(super) list_ttl: Option<String>,
    pub(super) max_blob_size: Option<RawSize>,
    pub(super) unattended_fills: Option<u32>,
    pub(super) mirrors: Option<Vec<String>>,
    pub(super) connect_timeout: Option<String>,
    pub(super) header_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) max_concurrent: Option<u32>,
    pub(super) queue_timeout: Option<String>,
    pub(super) stale_on_not_found: Option<bool>,
    pub(super) not_found_ttl: Option<String>,
    pub(super) manifest_timeout: Option<String>,
    pub(super) request_deadline: Option<String>,
    pub(super) eager_layers: Option<bool>,
    pub(super) prefetch_platforms: Option<Vec<String>>,
}

/// A size as written: a number of bytes, or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// `"64GiB"`, `"500MB"`, `"1024"`.
    Text(String),
}

/// The `[server]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawServer {
    pub(super) max_connections: Option<u32>,
    pub(super) max_connections_per_ip: Option<u32>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) stall_timeout: Option<String>,
    pub(super) max_streams_per_connection: Option<u32>,
    pub(super) connection_buffer: Option<String>,
    pub(super) body_memory: Option<String>,
}

/// The `[cache]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawCache {
    pub(super) eager_bytes: Option<RawSize>,
    pub(super) max_size: Option<RawSize>,
    pub(super) max_age: Option<String>,
    pub(super) pin: Option<Vec<String>>,
    pub(super) prefetch_file: Option<String>,
    pub(super) prefetch_interval: Option<String>,
}

/// The `[storage]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawStorage {
    pub(super) backend: Option<String>,
    pub(super) bucket: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) path_style: Option<bool>,
    pub(super) access_key_id: Option<String>,
    pub(super) secret_access_key: Option<String>,
    pub(super) secret_access_key_file: Option<String>,
    pub(super) local_tier_size: Option<RawSize>,
    pub(super) redirect: Option<bool>,
}

/// The `[cluster]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawCluster {
    pub(super) redis_url: Option<String>,
    pub(super) redis_password_file: Option<String>,
    pub(super) redis_ca_file: Option<String>,
    pub(super) node_url: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) lease: Option<String>,
}

/// The `[admin]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<String>,
}

/// The `[tls]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawTls {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) redirect_listen: Option<String>,
    #[serde(default)]
    pub(super) certs: Vec<RawCert>,
    pub(super) acme: Option<RawAcme>,
}

/// One `[[tls.certs]]` entry as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawCert {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) names: Option<Vec<String>>,
}

/// One string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    /// `"mailto:a@b"`
    One(String),
    /// `["mailto:a@b", "mailto:c@d"]`
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

/// The `[tls.acme]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawAcme {
    pub(super) domains: Option<Vec<String>>,
    pub(super) contact: Option<OneOrMany>,
    pub(super) directory_url: Option<String>,
    pub(super) challenge: Option<String>,
    pub(super) ca_file: Option<String>,
}

/// The `[auth]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawAuth {
    pub(super) htpasswd_file: Option<String>,
    pub(super) anonymous: Option<String>,
}

/// The `[limits]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawLimits {
    pub(super) rate: Option<u32>,
    pub(super) burst: Option<u32>,
    pub(super) connections: Option<u32>,
    pub(super) trusted_proxies: Option<Vec<String>>,
}

/// The `[access]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawAccess {
    pub(super) region_header: Option<String>,
    pub(super) geoip_file: Option<String>,
    pub(super) cors_origins: Option<Vec<String>>,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
}

/// One `[[access.rules]]` entry as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawRule {
    pub(super) name: Option<String>,
    pub(super) action: Option<String>,
    pub(super) ip: Option<Vec<String>>,
    pub(super) ip_regex: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) path: Option<String>,
    pub(super) upstream: Option<Vec<String>>,
    pub(super) repository: Option<String>,
    pub(super) users: Option<Vec<String>>,
    pub(super) region: Option<Vec<String>>,
    pub(super) region_regex: Option<String>,
    pub(super) negate: Option<bool>,
}
