//! The effective configuration as TOML: every key with the value berth
//! runs with, defaults and environment included, in the file's own shape
//! (so it can be read back), with every secret replaced by
//! `<redacted-secret>`.
//! `berth check-config` prints it.

use berth_config::{
    AccessRule, Anonymous, AuthMode, Challenge, Config, LogFormat, RuleAction, StorageSettings,
    UpstreamConfig,
};
use std::time::Duration;
use toml::{Table, Value};

/// What stands in for a secret (long enough to read back as a token).
const REDACTED: &str = "<redacted-secret>";

fn duration(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

/// A size as the docs write one: in the largest binary unit that divides
/// it (`"4MiB"`), else in bytes (`"1000B"`).
fn size(bytes: u64) -> Value {
    let unit = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)]
        .into_iter()
        .find(|(_, shift)| bytes != 0 && bytes.is_multiple_of(1 << shift));
    Value::String(match unit {
        Some((name, shift)) => format!("{}{name}", bytes >> shift),
        None => format!("{bytes}B"),
    })
}

fn strings<T: ToString>(items: &[T]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

fn text<T: ToString + ?Sized>(s: &T) -> Value {
    Value::String(s.to_string())
}

fn table(pairs: Vec<(&str, Option<Value>)>) -> Value {
    let mut t = Table::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            t.insert(k.to_owned(), v);
        }
    }
    Value::Table(t)
}

/// `[storage]`, the secret redacted.
fn storage_table(storage: &StorageSettings) -> Value {
    match storage {
        StorageSettings::Fs => table(vec![("backend", Some(text("fs")))]),
        StorageSettings::S3(s3) => table(vec![
            ("backend", Some(text("s3"))),
            ("bucket", Some(text(&s3.bucket))),
            ("prefix", Some(text(&s3.prefix))),
            ("endpoint", s3.endpoint.as_ref().map(text)),
            ("region", Some(text(&s3.region))),
            ("path_style", Some(Value::Boolean(s3.path_style))),
            ("access_key_id", s3.access_key_id.as_ref().map(text)),
            (
                "secret_access_key",
                s3.secret_access_key.as_ref().map(|_| text(REDACTED)),
            ),
            (
                "local_tier_size",
                s3.local_tier_size
                    .map(|n| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))),
            ),
            ("redirect", Some(Value::Boolean(s3.redirect))),
        ]),
    }
}

/// `config` as TOML text, secrets redacted.
pub(crate) fn effective_toml(c: &Config) -> String {
    toml::to_string(&effective_table(c)).unwrap_or_default()
}

/// `config` as a TOML table, secrets redacted: every key, the built-in
/// upstreams written out in full (so `builtin_upstreams = false`).
pub(crate) fn effective_table(c: &Config) -> Table {
    let s = &c.server;
    let cache = &c.cache;
    let access = &c.access;
    let mut top: Vec<(&str, Option<Value>)> = vec![
        ("listen", Some(text(&c.listen))),
        ("data_dir", Some(text(&c.data_dir.display()))),
        ("domain", c.domain.as_ref().map(text)),
        ("url302", c.url302.as_ref().map(text)),
        ("shutdown_grace", Some(duration(c.shutdown_grace))),
        (
            "log_format",
            Some(text(match c.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            })),
        ),
        ("log_level", Some(text(&c.log_level))),
        ("builtin_upstreams", Some(Value::Boolean(false))),
    ];
    top.push((
        "server",
        Some(table(vec![
            ("max_connections", Some(s.max_connections.into())),
            (
                "max_connections_per_ip",
                Some(s.max_connections_per_ip.into()),
            ),
            ("header_read_timeout", Some(duration(s.header_read_timeout))),
            ("idle_timeout", Some(duration(s.idle_timeout))),
            ("stall_timeout", Some(duration(s.stall_timeout))),
            (
                "max_streams_per_connection",
                Some(s.max_streams_per_connection.into()),
            ),
            ("connection_buffer", Some(size(s.connection_buffer))),
            ("body_memory", Some(size(s.body_memory))),
        ])),
    ));
    top.push((
        "cache",
        Some(table(vec![
            ("eager_bytes", Some(size(cache.eager_bytes))),
            ("max_size", cache.max_size.map(size)),
            ("max_age", cache.max_age.map(duration)),
            ("pin", Some(strings(&cache.pin))),
            (
                "prefetch_file",
                cache.prefetch_file.as_ref().map(|p| text(&p.display())),
            ),
            ("prefetch_interval", Some(duration(cache.prefetch_interval))),
        ])),
    ));
    top.push(("storage", Some(storage_table(&c.storage))));
    if let Some(cluster) = &c.cluster {
        top.push((
            "cluster",
            Some(table(vec![
                ("redis_url", Some(text(&cluster.redis_url))),
                (
                    "redis_password_file",
                    cluster
                        .redis_password
                        .as_ref()
                        .map(|(_, file)| text(&file.display())),
                ),
                (
                    "redis_ca_file",
                    cluster
                        .redis_ca
                        .as_ref()
                        .map(|(_, file)| text(&file.display())),
                ),
                ("node_url", Some(text(&cluster.node_url))),
                ("secret_file", Some(text(&cluster.secret_file.display()))),
                ("lease", Some(duration(cluster.lease))),
            ])),
        ));
    }
    top.push((
        "admin",
        Some(table(vec![
            ("listen", c.admin.listen.as_ref().map(text)),
            ("token", c.admin.token.as_ref().map(|_| text(REDACTED))),
        ])),
    ));
    if let Some(tls) = &c.tls {
        let certs: Vec<Value> = tls
            .certs
            .iter()
            .map(|p| {
                table(vec![
                    ("cert_file", Some(text(&p.cert_file.display()))),
                    ("key_file", Some(text(&p.key_file.display()))),
                    ("names", Some(strings(&p.names))),
                ])
            })
            .collect();
        let acme = tls.acme.as_ref().map(|a| {
            table(vec![
                ("domains", Some(strings(&a.domains))),
                ("contact", Some(strings(&a.contact))),
                ("directory_url", Some(text(&a.directory_url))),
                (
                    "challenge",
                    Some(text(match a.challenge {
                        Challenge::Http01 => "http-01",
                        Challenge::TlsAlpn01 => "tls-alpn-01",
                    })),
                ),
                ("ca_file", a.ca_file.as_ref().map(|p| text(&p.display()))),
            ])
        });
        top.push((
            "tls",
            Some(table(vec![
                ("redirect_listen", tls.redirect_listen.as_ref().map(text)),
                ("certs", Some(Value::Array(certs))),
                ("acme", acme),
            ])),
        ));
    }
    top.push((
        "auth",
        Some(table(vec![
            (
                "htpasswd_file",
                access
                    .auth
                    .htpasswd_file
                    .as_ref()
                    .map(|p| text(&p.display())),
            ),
            (
                "anonymous",
                Some(text(match access.auth.anonymous {
                    Anonymous::Pull => "pull",
                    Anonymous::None => "none",
                })),
            ),
        ])),
    ));
    let limits = &access.limits;
    top.push((
        "limits",
        Some(table(vec![
            ("rate", limits.rate.map(Value::from)),
            ("burst", limits.rate.map(|_| limits.burst.into())),
            ("connections", limits.connections.map(Value::from)),
            ("trusted_proxies", Some(strings(&limits.trusted_proxies))),
        ])),
    ));
    top.push((
        "access",
        Some(table(vec![
            ("region_header", access.region_header.as_ref().map(text)),
            (
                "geoip_file",
                access.geoip_file.as_ref().map(|p| text(&p.display())),
            ),
            ("cors_origins", Some(strings(&access.cors_origins))),
            (
                "rules",
                Some(Value::Array(access.rules.iter().map(rule).collect())),
            ),
        ])),
    ));
    top.push((
        "upstreams",
        Some(Value::Array(c.upstreams.iter().map(upstream).collect())),
    ));
    match table(top) {
        Value::Table(t) => t,
        _ => Table::new(),
    }
}

fn rule(r: &AccessRule) -> Value {
    macro_rules! pattern {
        ($re:expr) => {
            $re.as_ref().map(|re| text(&re.as_str()))
        };
    }
    let list = |items: &[String]| (!items.is_empty()).then(|| strings(items));
    table(vec![
        ("name", Some(text(&r.name))),
        (
            "action",
            Some(text(match r.action {
                RuleAction::Allow => "allow",
                RuleAction::Deny => "deny",
            })),
        ),
        ("negate", r.negate.then_some(Value::Boolean(true))),
        ("ip", (!r.ip.is_empty()).then(|| strings(&r.ip))),
        ("ip_regex", pattern!(r.ip_regex)),
        ("user_agent", pattern!(r.user_agent)),
        ("path", pattern!(r.path)),
        ("upstream", list(&r.upstream)),
        ("repository", pattern!(r.repository)),
        ("users", list(&r.users)),
        ("region", list(&r.region)),
        ("region_regex", pattern!(r.region_regex)),
    ])
}

pub(crate) fn upstream(u: &UpstreamConfig) -> Value {
    let r = &u.resilience;
    let p = &u.policy;
    table(vec![
        ("name", Some(text(&u.name))),
        ("url", Some(text(&u.url))),
        ("default", Some(Value::Boolean(u.default))),
        ("auto_library", Some(Value::Boolean(u.auto_library))),
        ("host_prefix", u.host_prefix.as_ref().map(text)),
        ("aliases", Some(strings(&u.aliases))),
        ("realm_hosts", Some(strings(&u.realm_hosts))),
        (
            "username",
            u.credentials.as_ref().map(|c| text(&c.username)),
        ),
        ("password", u.credentials.as_ref().map(|_| text(REDACTED))),
        (
            "auth_mode",
            Some(text(match u.auth_mode {
                AuthMode::Managed => "managed",
                AuthMode::Passthrough => "passthrough",
            })),
        ),
        ("push", Some(Value::Boolean(u.push))),
        ("private_network", Some(Value::Boolean(u.private_network))),
        ("mirrors", Some(strings(&r.mirrors))),
        ("connect_timeout", Some(duration(r.connect_timeout))),
        ("header_timeout", Some(duration(r.header_timeout))),
        ("idle_timeout", Some(duration(r.idle_timeout))),
        ("retries", Some(r.retries.into())),
        ("max_concurrent", Some(r.max_concurrent.into())),
        ("queue_timeout", Some(duration(r.queue_timeout))),
        ("manifest_timeout", Some(duration(r.manifest_timeout))),
        ("request_deadline", Some(duration(r.request_deadline))),
        ("tag_ttl", Some(duration(p.tag_ttl))),
        ("list_ttl", Some(duration(p.list_ttl))),
        ("not_found_ttl", Some(duration(p.not_found_ttl))),
        (
            "stale_on_not_found",
            Some(Value::Boolean(p.stale_on_not_found)),
        ),
        ("max_blob_size", Some(size(p.fills.max_blob_size))),
        ("unattended_fills", Some(p.fills.unattended_fills.into())),
        ("eager_layers", Some(Value::Boolean(p.eager_layers))),
        ("prefetch_platforms", Some(strings(&p.prefetch_platforms))),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file that sets something in every section.
    pub(crate) const FULL: &str = r#"
listen = "127.0.0.1:5001"
domain = "mirror.example"
url302 = "https://example.org/"
log_level = "info,berth_upstream=debug"
[server]
max_connections = 900
[cache]
max_size = "10GiB"
max_age = "30d"
pin = ["docker.io/library/*"]
[admin]
listen = "127.0.0.1:5090"
token = "a-very-secret-admin-token"
[auth]
anonymous = "pull"
[limits]
rate = 10
burst = 20
trusted_proxies = ["10.0.0.0/8"]
[access]
region_header = "CF-IPCountry"
[[access.rules]]
name = "agents"
action = "deny"
negate = true
user_agent = "^(docker|containerd)/"
[[upstreams]]
name = "lab.example"
url = "https://lab.example"
username = "robot"
password = "hunter2-upstream-secret"
tag_ttl = "2m"
mirrors = ["https://mirror-a.example"]
"#;

    /// The printout reads back as the same configuration (compared as
    /// parsed, every field: a key the printer forgot shows as a default
    /// that differs from `FULL`'s), and no secret is in it.
    #[test]
    fn the_printout_reads_back_and_shows_no_secret() {
        let config = Config::from_toml(FULL, &|_| None).unwrap();
        let printed = effective_toml(&config);
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("a-very-secret"), "{printed}");
        assert!(printed.contains(REDACTED));
        let again =
            Config::from_toml(&printed, &|_| None).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        // Secrets print as `Secret(***)` whatever they hold.
        assert_eq!(format!("{again:#?}"), format!("{config:#?}"), "{printed}");
        assert!(printed.contains("tag_ttl = \"2m\""), "{printed}");
        assert!(
            printed.contains("name = \"docker.io\""),
            "the built-ins are listed: {printed}"
        );
    }

    #[test]
    fn the_embedded_defaults_read_back() {
        let config = Config::embedded(&|_| None).unwrap();
        let printed = effective_toml(&config);
        let again =
            Config::from_toml(&printed, &|_| None).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(format!("{again:#?}"), format!("{config:#?}"), "{printed}");
    }
}
