//! Typed configuration: the TOML file format, embedded defaults (the public
//! registries), the `BERTH_*` environment overlay and validation.
//!
//! Parsing is pure: [`Config::from_toml`] takes the file text and an
//! injectable environment lookup, so tests never touch the process
//! environment. Depends on no other berth crate.

mod access;
mod admin;
mod builtin;
mod cache;
mod checks;
mod cluster;
mod compat_env;
mod file;
mod fills;
mod names;
mod parse;
mod policy;
mod resilience;
mod secret;
mod server;
mod storage;
mod tls;
mod validate;

pub use access::{
    AccessRule, AccessSettings, Anonymous, AuthSettings, LimitSettings, Network, RuleAction,
    canonical_ip,
};
pub use admin::AdminSettings;
pub use cache::CacheSettings;
pub use cluster::ClusterSettings;
pub use compat_env::ignored_variables;
pub use fills::{DEFAULT_MAX_BLOB_SIZE, FillLimits};
pub use names::qualify_repository;
pub use policy::CachePolicy;
pub use resilience::Resilience;
pub use secret::Secret;
pub use server::{ServerLimits, byte_size};
pub use storage::{S3Settings, StorageSettings};
pub use tls::{AcmeSettings, CertFiles, Challenge, LETS_ENCRYPT, TlsSettings, well_formed_name};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5000";
/// Default cache directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "berth-data";
/// Default time a tag answer is trusted without asking upstream.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
/// Default grace period for in-flight responses at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the registry API listens on.
    pub listen: SocketAddr,
    /// Root directory of the cache.
    pub data_dir: PathBuf,
    /// Base domain for Host routing (`docker.<domain>` and so on).
    pub domain: Option<String>,
    /// Where requests outside the registry API are redirected; `None`:
    /// `/` gets a landing page and anything else a 404.
    pub url302: Option<url::Url>,
    /// How long shutdown waits for in-flight responses.
    pub shutdown_grace: Duration,
    /// Log output format.
    pub log_format: LogFormat,
    /// Which log lines are written: a level (`info`), or directives like
    /// `info,berth_upstream=debug`. `RUST_LOG`, when set, wins.
    pub log_level: String,
    /// The older systems' environment variables honoured, one line each
    /// (`URL302 → url302 = "…"`), for `check-config`.
    pub seed_mappings: Vec<String>,
    /// Limits on client connections.
    pub server: ServerLimits,
    /// Settings of the cache as a whole.
    pub cache: CacheSettings,
    /// Where blobs are kept (`[storage]`).
    pub storage: StorageSettings,
    /// Several replicas as one cache (`[cluster]`), when configured.
    pub cluster: Option<ClusterSettings>,
    /// The admin listener and token.
    pub admin: AdminSettings,
    /// HTTPS on `listen`, when `[tls]` is present.
    pub tls: Option<TlsSettings>,
    /// Logins, per-client limits and access rules.
    pub access: AccessSettings,
    /// Configured upstream registries; never empty.
    pub upstreams: Vec<UpstreamConfig>,
}

impl Config {
    /// What is valid but likely a mistake, to show at start and in
    /// `check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let with_credentials: Vec<&str> = self
            .upstreams
            .iter()
            .filter(|u| u.credentials.is_some())
            .map(|u| u.name.as_str())
            .collect();
        if !with_credentials.is_empty() && !self.access.restricts_pulls() {
            warnings.push(format!(
                "upstream credentials are configured ({}) but nothing limits who may pull: anyone who reaches {} \
                 pulls with them, private images included. Set [auth] anonymous = \"none\" with an htpasswd_file, \
                 or an allow rule for your networks (docs/security.md)",
                with_credentials.join(", "),
                self.listen
            ));
        }
        for u in &self.upstreams {
            warnings.extend(u.warnings.iter().cloned());
        }
        warnings
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// One upstream registry.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The name clients use for this upstream: `ns=` value and path prefix (`docker.io`).
    pub name: String,
    /// Base URL berth dials, e.g. `https://registry-1.docker.io`.
    pub url: url::Url,
    /// Whether names that carry no registry go here.
    pub default: bool,
    /// Whether single-segment names get `library/` (Docker Hub).
    pub auto_library: bool,
    /// Host routing prefix: requests to `<host_prefix>.<domain>` go here.
    pub host_prefix: Option<String>,
    /// Extra path prefixes that select this upstream besides `name`.
    pub aliases: Vec<String>,
    /// Token realm hosts allowed to receive credentials, besides the
    /// upstream's own host and registrable domain.
    pub realm_hosts: Vec<String>,
    /// Credentials for the upstream, if any.
    pub credentials: Option<Credentials>,
    /// Whose credentials go upstream: berth's own, or each client's.
    pub auth_mode: AuthMode,
    /// Whether clients may push through berth (pass-through only).
    pub push: bool,
    /// Whether the upstream lives on a private network, so its blobs may
    /// be redirected to loopback, private and link-local addresses (never
    /// to berth's own listeners). Set in the file, or true when `url` is
    /// an internal IP literal; never inferred from DNS.
    pub private_network: bool,
    /// Transport: mirrors, timeouts, retries and the concurrency cap.
    pub resilience: Resilience,
    /// How what comes from this upstream is cached.
    pub policy: CachePolicy,
    /// What is valid here but likely a mistake (shown with
    /// [`Config::warnings`]).
    pub warnings: Vec<String>,
}

/// Whose credentials a request upstream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// berth fetches tokens itself, anonymously or with the upstream's
    /// configured credentials; a client's `Authorization` never goes
    /// upstream.
    #[default]
    Managed,
    /// Each client brings its own credentials: the upstream's challenge
    /// points at berth's token endpoint, which relays them, and the
    /// client's token is used upstream.
    Passthrough,
}

impl AuthMode {
    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::Passthrough => "passthrough",
        }
    }
}

/// Username and password for an upstream.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: Secret,
}

/// A configuration problem, naming the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigProblem {
    /// Dotted path of the key, e.g. `upstreams[1].url`.
    pub key: String,
    /// Why it was refused.
    pub reason: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl ConfigError {
    fn one(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self(vec![ConfigProblem {
            key: key.into(),
            reason: reason.into(),
        }])
    }
}

impl Config {
    /// The embedded defaults: no file, public registries, local disk cache.
    pub fn embedded(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_toml("", env)
    }

    /// Parse and validate TOML text, then apply `BERTH_*` overrides looked
    /// up through `env`.
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        validate::build(parse::parse(text)?, env)
    }

    /// Read a file and parse it like [`Config::from_toml`].
    pub fn load(
        path: &std::path::Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::one(path.display().to_string(), format!("cannot read file: {e}"))
        })?;
        Self::from_toml(&text, env)
    }

    /// The upstream configured under `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod compat_env_tests;
#[cfg(test)]
mod tests;
