//! Turns the raw file into a [`Config`]: merges built-in upstreams, applies
//! defaults and `BERTH_*` environment overrides, and collects every problem
//! instead of stopping at the first.

use crate::builtin::UpstreamEntry;
use crate::checks::{Problems, duration, parse_url};
use crate::file::RawUpstream;
use crate::parse::Parsed;
use crate::{
    AuthMode, Config, ConfigError, Credentials, DEFAULT_DATA_DIR, DEFAULT_LISTEN,
    DEFAULT_SHUTDOWN_GRACE, LogFormat, Secret, UpstreamConfig, builtin,
};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The environment variable that overrides an upstream's `field`:
/// `BERTH_UPSTREAM_DOCKER_IO_PASSWORD` for `docker.io`.
pub(super) fn upstream_env_var(name: &str, field: &str) -> String {
    let norm: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("BERTH_UPSTREAM_{norm}_{}", field.to_ascii_uppercase())
}

/// Build the validated config from the raw file and the environment.
pub(super) fn build(parsed: Parsed, env: Env<'_>) -> Result<Config, ConfigError> {
    let Parsed {
        mut raw,
        problems: mut p,
        order,
    } = parsed;
    let mut entries = builtin::entries(&raw);
    let seed_mappings = crate::compat_env::apply(&mut raw, &mut entries, env, &mut p);
    let (listen_key, listen_text) = match env("BERTH_LISTEN") {
        Some(v) => ("BERTH_LISTEN", v),
        None => (
            "listen",
            raw.listen
                .take()
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        ),
    };
    let listen = listen_text.parse().unwrap_or_else(|e| {
        p.add(
            listen_key,
            format!("{listen_text:?} is not an address like 0.0.0.0:5000: {e}"),
        );
        ([0, 0, 0, 0], 5000).into()
    });
    let data_dir = env("BERTH_DATA_DIR")
        .or(raw.data_dir.take())
        .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned());
    if data_dir.is_empty() {
        p.add("data_dir", "must not be empty");
    }
    let domain = env("BERTH_DOMAIN")
        .or(raw.domain.take())
        .map(|d| d.to_ascii_lowercase());
    if domain
        .as_deref()
        .is_some_and(|d| d.is_empty() || d.contains('/') || d.contains(':'))
    {
        p.add(
            "domain",
            "must be a bare DNS name such as mirror.example.com",
        );
    }
    let url302 = env("BERTH_URL302")
        .or(raw.url302.take())
        .and_then(|text| parse_url(&mut p, "url302", &text));
    let shutdown_grace = duration(
        &mut p,
        "shutdown_grace",
        raw.shutdown_grace.as_deref(),
        DEFAULT_SHUTDOWN_GRACE,
    );
    let log_format = match env("BERTH_LOG_FORMAT").as_deref() {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            p.add(
                "BERTH_LOG_FORMAT",
                format!("{other:?} is neither \"text\" nor \"json\""),
            );
            LogFormat::Text
        }
        None => raw.log_format.unwrap_or(LogFormat::Text),
    };
    let log_level = env("BERTH_LOG_LEVEL")
        .or(raw.log_level.take())
        .unwrap_or_else(|| "info".to_owned());
    if !log_level_is_valid(&log_level) {
        p.add(
            "log_level",
            format!("{log_level:?} is not a level (error, warn, info, debug, trace, off) nor directives like \"info,berth_upstream=debug\""),
        );
    }
    let server = crate::server::build(&mut p, raw.server.as_ref());
    let cache = crate::cache::build(&mut p, raw.cache.as_ref());
    let storage = crate::storage::build(&mut p, raw.storage.as_ref());
    let cluster = crate::cluster::build(&mut p, raw.cluster.as_ref(), env, listen);
    let admin = crate::admin::build(&mut p, raw.admin.as_ref(), env, listen);
    let tls = crate::tls::build(&mut p, raw.tls.as_ref(), listen);
    let access = crate::access::build(
        &mut p,
        raw.auth.as_ref(),
        raw.limits.as_ref(),
        raw.access.as_ref(),
    );
    let upstreams = upstreams(&mut p, &entries, env);
    if access.auth.htpasswd_file.is_some()
        && let Some(u) = upstreams
            .iter()
            .find(|u| u.auth_mode == AuthMode::Passthrough)
    {
        p.add(
            "auth.htpasswd_file",
            format!(
                "upstream {} uses auth_mode = \"passthrough\": a client's Authorization then carries its upstream credentials, so it cannot also carry a login to berth",
                u.name
            ),
        );
    }
    if p.0.is_empty() {
        Ok(Config {
            listen,
            data_dir: data_dir.into(),
            domain,
            url302,
            shutdown_grace,
            log_format,
            log_level,
            seed_mappings,
            server,
            cache,
            storage,
            cluster,
            admin,
            tls,
            access,
            upstreams,
        })
    } else {
        Err(ConfigError(crate::parse::in_file_order(p.0, &order)))
    }
}

/// Whether `text` is a level, or comma-separated `[target=]level`
/// directives.
fn log_level_is_valid(text: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    !text.is_empty()
        && text.split(',').all(|directive| {
            let (target, level) = directive.rsplit_once('=').unwrap_or(("", directive));
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
                && target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        })
}

/// Validate each upstream entry (built-ins merged with the file's).
fn upstreams(p: &mut Problems, entries: &[UpstreamEntry], env: Env<'_>) -> Vec<UpstreamConfig> {
    if entries.is_empty() {
        p.add(
            "upstreams",
            "no upstream configured (builtin_upstreams = false and no [[upstreams]])",
        );
    }
    let mut built: Vec<UpstreamConfig> = Vec::new();
    for e in entries {
        if let Some(mut u) = upstream(p, &e.key, &e.effective(), env) {
            u.warnings = crate::resilience::cut_short(&u.name, &u.resilience);
            built.push(u);
        }
    }
    check_unique(p, &built);
    built
}

fn check_unique(p: &mut Problems, built: &[UpstreamConfig]) {
    for (i, u) in built.iter().enumerate() {
        let earlier = &built[..i];
        if earlier.iter().any(|e| e.name == u.name) {
            p.add(
                format!("upstreams.{}", u.name),
                "name is used by more than one upstream",
            );
        }
        if let Some(prefix) = &u.host_prefix
            && earlier
                .iter()
                .any(|e| e.host_prefix.as_ref() == Some(prefix))
        {
            p.add(
                format!("upstreams.{}.host_prefix", u.name),
                format!("{prefix:?} is used by more than one upstream"),
            );
        }
        for alias in &u.aliases {
            if built.iter().any(|e| &e.name == alias)
                || earlier.iter().any(|e| e.aliases.contains(alias))
            {
                p.add(
                    format!("upstreams.{}.aliases", u.name),
                    format!("{alias:?} already names another upstream"),
                );
            }
        }
    }
    if built.iter().filter(|u| u.default).count() > 1 {
        p.add("upstreams", "more than one upstream has default = true");
    }
}

fn registry_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_:".contains(&b))
        && !name.starts_with(['.', '-'])
        && !name.contains("..")
}

fn upstream(p: &mut Problems, key: &str, u: &RawUpstream, env: Env<'_>) -> Option<UpstreamConfig> {
    let before = p.0.len();
    let name = u.name.clone().unwrap_or_default();
    if !registry_name_ok(&name) {
        p.add(
            format!("{key}.name"),
            format!("{name:?} must be a registry name such as \"ghcr.io\" (lowercase, no '/')"),
        );
    }
    let url = match u.url.as_deref() {
        None => {
            p.add(format!("{key}.url"), "is required");
            None
        }
        Some(text) => parse_url(p, &format!("{key}.url"), text),
    };
    for (field, list) in [("aliases", &u.aliases), ("realm_hosts", &u.realm_hosts)] {
        for item in list.iter().flatten() {
            if !registry_name_ok(item) {
                p.add(
                    format!("{key}.{field}"),
                    format!("{item:?} is not a lowercase host name"),
                );
            }
        }
    }
    for item in u.realm_hosts.iter().flatten() {
        if let Some((host, port)) = item.split_once(':')
            && (host.is_empty() || port.parse::<u16>().map_or(true, |n| n == 0))
        {
            p.add(
                format!("{key}.realm_hosts"),
                format!("{item:?} must be a host name or host:port with a port from 1 to 65535"),
            );
        }
    }
    if let Some(prefix) = &u.host_prefix
        && (prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        p.add(
            format!("{key}.host_prefix"),
            format!("{prefix:?} must be one DNS label such as \"ghcr\""),
        );
    }
    let credentials = credentials(p, key, &name, u, env);
    let auth_mode = auth_mode(p, key, u, credentials.is_some());
    let resilience = super::resilience::build(p, key, u);
    let policy = super::policy::build(p, key, u, &resilience);
    let url = url?;
    let private_network = u.private_network.unwrap_or_else(|| internal_literal(&url));
    (p.0.len() == before).then(|| UpstreamConfig {
        name,
        url,
        default: u.default.unwrap_or(false),
        auto_library: u.auto_library.unwrap_or(false),
        host_prefix: u.host_prefix.clone(),
        aliases: u.aliases.clone().unwrap_or_default(),
        realm_hosts: u.realm_hosts.clone().unwrap_or_default(),
        credentials,
        auth_mode,
        push: u.push.unwrap_or(false),
        private_network,
        resilience,
        policy,
        warnings: Vec::new(),
    })
}

/// Whether `url` names its host by an IP literal that is not on the public
/// internet (loopback, private, link-local, unique-local). A host name
/// never counts, whatever it resolves to: DNS is the attacker's to answer.
fn internal_literal(url: &url::Url) -> bool {
    let v4 = |ip: std::net::Ipv4Addr| ip.is_loopback() || ip.is_private() || ip.is_link_local();
    match url.host() {
        Some(url::Host::Ipv4(ip)) => v4(ip),
        Some(url::Host::Ipv6(ip)) => {
            let first = ip.segments()[0];
            ip.to_ipv4_mapped().is_some_and(v4)
                || ip.is_loopback()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
        _ => false,
    }
}

/// `auth_mode`, and what it rules out: berth's own credentials beside
/// the clients', and push without the clients' credentials.
fn auth_mode(p: &mut Problems, key: &str, u: &RawUpstream, has_credentials: bool) -> AuthMode {
    let mode = match u.auth_mode.as_deref() {
        None | Some("managed") => AuthMode::Managed,
        Some("passthrough") => AuthMode::Passthrough,
        Some(other) => {
            p.add(
                format!("{key}.auth_mode"),
                format!("{other:?} is neither \"managed\" nor \"passthrough\""),
            );
            return AuthMode::Managed;
        }
    };
    if mode == AuthMode::Passthrough && has_credentials {
        p.add(
            format!("{key}.auth_mode"),
            "\"passthrough\" sends each client's own credentials upstream; remove username and password",
        );
    }
    if u.push == Some(true) && mode != AuthMode::Passthrough {
        p.add(
            format!("{key}.push"),
            "push needs auth_mode = \"passthrough\": a push goes upstream with the client's own credentials",
        );
    }
    mode
}

fn credentials(
    p: &mut Problems,
    key: &str,
    name: &str,
    u: &RawUpstream,
    env: Env<'_>,
) -> Option<Credentials> {
    let username = env(&upstream_env_var(name, "username")).or_else(|| u.username.clone());
    let reported = p.0.len();
    let password = match (
        env(&upstream_env_var(name, "password")),
        &u.password,
        &u.password_file,
    ) {
        (Some(v), _, _) => Some(v),
        (None, Some(_), Some(_)) => {
            p.add(
                format!("{key}.password_file"),
                "set either password or password_file, not both",
            );
            None
        }
        (None, Some(v), None) => Some(v.clone()),
        (None, None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) => Some(v.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => {
                p.add(
                    format!("{key}.password_file"),
                    format!("cannot read {path:?}: {e}"),
                );
                None
            }
        },
        (None, None, None) => None,
    };
    match (username, password) {
        (Some(username), Some(password)) => Some(Credentials {
            username,
            password: Secret::new(password),
        }),
        (None, None) => None,
        // The password's own problem is already said.
        (Some(_), None) if p.0.len() > reported => None,
        (Some(_), None) => {
            p.add(
                format!("{key}.password"),
                "username is set but no password or password_file",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                format!("{key}.username"),
                "a password is set but no username",
            );
            None
        }
    }
}
