//! The documented environment variables of the systems berth replaces,
//! each mapped onto the berth setting that does the same, so that
//! migrating means swapping the binary. A berth setting given in the file
//! or a `BERTH_*` variable wins over its older name, and the mapping says
//! so; `berth check-config` prints every mapping applied or ignored.
//!
//! - `PROXY_HOSTNAME`, `PROXY_PROTOCOL`: the default upstream's `url`.
//! - `REQUEST_TIMEOUT` (milliseconds): every upstream's `header_timeout`.
//! - `MAX_RETRIES`: every upstream's `retries`.
//! - `DEBUG`: `log_level = "debug"`.
//! - `URL302`, `CUSTOM_DOMAIN`: `url302`, `domain`.
//! - `CERT_PATH`, `KEY_PATH`: `[tls] cert_file`, `key_file`.
//! - `PORT`: `listen = "0.0.0.0:<PORT>"`.
//! - The allow and block lists (`PATHNAME_REGEX`, `UA_WHITELIST_REGEX`,
//!   `UA_BLACKLIST_REGEX`, `IP_*_REGEX`, `REGION_*_REGEX`): deny rules
//!   placed before the file's own, a block list as a rule on its pattern,
//!   an allow list as a negated one (`negate = true`).

use crate::Resilience;
use crate::builtin::UpstreamEntry;
use crate::checks::Problems;
use crate::file::{RawAccess, RawConfig, RawRule, RawTls};
use crate::resilience::MAX_RETRIES;
use std::time::Duration;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The allow and block lists: (variable, rule name, negated, the rule's
/// pattern key).
const LISTS: [(&str, &str, bool, Pattern); 7] = [
    (
        "UA_BLACKLIST_REGEX",
        "ua-blacklist",
        false,
        Pattern::UserAgent,
    ),
    ("IP_BLACKLIST_REGEX", "ip-blacklist", false, Pattern::Ip),
    (
        "REGION_BLACKLIST_REGEX",
        "region-blacklist",
        false,
        Pattern::Region,
    ),
    (
        "UA_WHITELIST_REGEX",
        "ua-whitelist",
        true,
        Pattern::UserAgent,
    ),
    ("IP_WHITELIST_REGEX", "ip-whitelist", true, Pattern::Ip),
    (
        "REGION_WHITELIST_REGEX",
        "region-whitelist",
        true,
        Pattern::Region,
    ),
    ("PATHNAME_REGEX", "pathname", true, Pattern::Path),
];

#[derive(Debug, Clone, Copy)]
enum Pattern {
    UserAgent,
    Ip,
    Region,
    Path,
}

/// Apply the seed variables to `raw`; returns one line per variable set.
pub(super) fn apply(
    raw: &mut RawConfig,
    entries: &mut [UpstreamEntry],
    env: Env<'_>,
    p: &mut Problems,
) -> Vec<String> {
    let mut said = Vec::new();
    let domain_taken = raw.domain.is_some() || env("BERTH_DOMAIN").is_some();
    for var in ["CUSTOM_DOMAIN", "REGISTRY_DOMAIN"] {
        if let Some(v) = env(var)
            && set(
                &mut said,
                var,
                "domain",
                domain_taken || raw.domain.is_some(),
                &v,
            )
        {
            raw.domain = Some(v);
        }
    }
    if let Some(v) = env("REGISTRY_DOMAIN")
        && let Some(acme) = raw.tls.as_mut().and_then(|t| t.acme.as_mut())
    {
        let taken = acme.domains.as_ref().is_some_and(|d| !d.is_empty());
        if set(&mut said, "REGISTRY_DOMAIN", "tls.acme.domains", taken, &v) {
            acme.domains = Some(vec![v]);
        }
    }
    if let Some(v) = env("URL302") {
        let taken = raw.url302.is_some() || env("BERTH_URL302").is_some();
        if set(&mut said, "URL302", "url302", taken, &v) {
            raw.url302 = Some(v);
        }
    }
    if let Some(v) = env("PORT") {
        match v.parse::<u16>() {
            Ok(port) if port > 0 => {
                let listen = format!("0.0.0.0:{port}");
                let taken = raw.listen.is_some() || env("BERTH_LISTEN").is_some();
                if set(&mut said, "PORT", "listen", taken, &listen) {
                    raw.listen = Some(listen);
                }
            }
            _ => p.add("PORT", format!("{v:?} is not a port from 1 to 65535")),
        }
    }
    if let Some(v) = env("DEBUG") {
        if matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on") {
            let taken = raw.log_level.is_some() || env("BERTH_LOG_LEVEL").is_some();
            if set(&mut said, "DEBUG", "log_level", taken, "debug") {
                raw.log_level = Some("debug".to_owned());
            }
        } else {
            said.push(format!(
                "DEBUG ignored: {v:?} is not one of 1, true, yes, on"
            ));
        }
    }
    for (var, key) in [("CERT_PATH", "cert_file"), ("KEY_PATH", "key_file")] {
        let Some(v) = env(var) else { continue };
        let tls = raw.tls.get_or_insert_with(RawTls::default);
        let slot = if key == "cert_file" {
            &mut tls.cert_file
        } else {
            &mut tls.key_file
        };
        if set(&mut said, var, &format!("tls.{key}"), slot.is_some(), &v) {
            *slot = Some(v);
        }
    }
    upstream_settings(entries, env, p, &mut said);
    said.extend(rules(raw, env));
    said
}

/// Say how `var` maps to `key`, or that it is ignored because `key` is
/// already `taken`; whether to apply it.
fn set(said: &mut Vec<String>, var: &str, key: &str, taken: bool, value: &str) -> bool {
    said.push(if taken {
        format!("{var} ignored: {key} is set")
    } else {
        format!("{var} → {key} = {value:?}")
    });
    !taken
}

/// Lines for the variables, among `names`, of the replaced systems that
/// berth has no use for: they are named so that nobody thinks they apply.
pub fn ignored_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| n.starts_with("TRAEFIK_"))
        .map(|n| {
            format!(
                "{n} ignored: berth terminates HTTPS itself ([tls], with ACME), so it needs no Traefik in front"
            )
        })
        .collect()
}

/// `PROXY_HOSTNAME` / `PROXY_PROTOCOL` for the default upstream, and
/// `REQUEST_TIMEOUT` / `MAX_RETRIES` for every upstream, each only where
/// the file left the key unset.
fn upstream_settings(
    entries: &mut [UpstreamEntry],
    env: Env<'_>,
    p: &mut Problems,
    said: &mut Vec<String>,
) {
    if let Some(url) = proxy_url(env, p, said) {
        let default = entries
            .iter_mut()
            .find(|e| e.effective().default == Some(true));
        match default {
            Some(e) if e.written.url.is_some() => said.push(format!(
                "PROXY_HOSTNAME ignored: {}.url is set in the file",
                e.key
            )),
            Some(e) => {
                let name = e.effective().name.unwrap_or_default();
                said.push(format!("PROXY_HOSTNAME → upstream {name} url = {url:?}"));
                e.written.url = Some(url);
            }
            None => p.add(
                "PROXY_HOSTNAME",
                "no upstream is the default to point at it",
            ),
        }
    }
    if let Some(ms) = env("REQUEST_TIMEOUT") {
        match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => request_timeout(entries, Duration::from_millis(ms), said),
            _ => p.add(
                "REQUEST_TIMEOUT",
                format!("{ms:?} is not a number of milliseconds"),
            ),
        }
    }
    if let Some(n) = env("MAX_RETRIES") {
        match n.parse::<u32>() {
            Ok(n) if n <= MAX_RETRIES => {
                let mut kept = Vec::new();
                for e in entries.iter_mut() {
                    if e.written.retries.is_some() {
                        kept.push(e.effective().name.unwrap_or_else(|| e.key.clone()));
                    } else {
                        e.written.retries = Some(n);
                    }
                }
                said.push(format!("MAX_RETRIES → every upstream's retries = {n}"));
                if !kept.is_empty() {
                    said.push(format!(
                        "MAX_RETRIES ignored for {}: retries is set in the file",
                        kept.join(", ")
                    ));
                }
            }
            Ok(n) => p.add(
                "MAX_RETRIES",
                format!("{n} is more than {MAX_RETRIES}; more retries only hide an outage"),
            ),
            Err(_) => p.add("MAX_RETRIES", format!("{n:?} is not a whole number")),
        }
    }
}

/// The default upstream's URL from `PROXY_HOSTNAME` (a host, `host:port`
/// or a whole URL) and `PROXY_PROTOCOL`.
fn proxy_url(env: Env<'_>, p: &mut Problems, said: &mut Vec<String>) -> Option<String> {
    let protocol = env("PROXY_PROTOCOL");
    let Some(host) = env("PROXY_HOSTNAME") else {
        if protocol.is_some() {
            said.push("PROXY_PROTOCOL ignored: it applies only with PROXY_HOSTNAME".to_owned());
        }
        return None;
    };
    if host.contains("://") {
        let web = matches!(url::Url::parse(&host), Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !web {
            p.add(
                "PROXY_HOSTNAME",
                format!("{host:?} is not an http:// or https:// URL"),
            );
            return None;
        }
        if protocol.is_some() {
            said.push(
                "PROXY_PROTOCOL ignored: PROXY_HOSTNAME is a URL with its own scheme".to_owned(),
            );
        }
        return Some(host.trim_end_matches('/').to_owned());
    }
    let scheme = match protocol.as_deref().map(|v| {
        v.trim_end_matches("://")
            .trim_end_matches(':')
            .to_ascii_lowercase()
    }) {
        None => "https".to_owned(),
        Some(s) if s == "http" || s == "https" => s,
        Some(_) => {
            p.add(
                "PROXY_PROTOCOL",
                format!(
                    "{:?} is neither http nor https",
                    protocol.unwrap_or_default()
                ),
            );
            return None;
        }
    };
    let url = format!("{scheme}://{host}");
    let plain = !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']);
    match url::Url::parse(&url) {
        Ok(u) if plain && u.host().is_some() => Some(url),
        _ => {
            p.add(
                "PROXY_HOSTNAME",
                format!("{host:?} is neither a host name (host or host:port) nor a URL"),
            );
            None
        }
    }
}

/// `REQUEST_TIMEOUT`: how long a request to upstream may take. It sets
/// each attempt's `header_timeout`, and raises `request_deadline` (the
/// whole request's limit, which would otherwise cut first) to match.
fn request_timeout(entries: &mut [UpstreamEntry], timeout: Duration, said: &mut Vec<String>) {
    let text = format!("{}ms", timeout.as_millis());
    let raise = timeout > Resilience::default().request_deadline;
    let mut kept = Vec::new();
    for e in entries.iter_mut() {
        if e.written.header_timeout.is_some() {
            kept.push(e.effective().name.unwrap_or_else(|| e.key.clone()));
            continue;
        }
        e.written.header_timeout = Some(text.clone());
        if raise && e.written.request_deadline.is_none() {
            e.written.request_deadline = Some(text.clone());
        }
    }
    said.push(if raise {
        format!("REQUEST_TIMEOUT → every upstream's header_timeout and request_deadline = {text:?}")
    } else {
        format!("REQUEST_TIMEOUT → every upstream's header_timeout = {text:?}")
    });
    if !kept.is_empty() {
        said.push(format!(
            "REQUEST_TIMEOUT ignored for {}: header_timeout is set in the file",
            kept.join(", ")
        ));
    }
}

/// The allow and block lists as deny rules, before the file's own.
fn rules(raw: &mut RawConfig, env: Env<'_>) -> Vec<String> {
    let mut said = Vec::new();
    let mut seeded = Vec::new();
    for (var, name, negate, pattern) in LISTS {
        let Some(regex) = env(var) else { continue };
        if regex.is_empty() {
            said.push(format!("{var} ignored: it is empty"));
            continue;
        }
        let name = format!("seed-{name}");
        said.push(format!(
            "{var} → [[access.rules]] {name:?}: deny {} {regex:?}",
            if negate {
                "unless it matches"
            } else {
                "when it matches"
            }
        ));
        let mut rule = RawRule {
            name: Some(name),
            action: Some("deny".to_owned()),
            negate: Some(negate),
            ..RawRule::default()
        };
        match pattern {
            Pattern::UserAgent => rule.user_agent = Some(regex),
            Pattern::Ip => rule.ip_regex = Some(regex),
            Pattern::Region => rule.region_regex = Some(regex),
            Pattern::Path => rule.path = Some(regex),
        }
        seeded.push(rule);
    }
    if !seeded.is_empty() {
        let access = raw.access.get_or_insert_with(RawAccess::default);
        seeded.append(&mut access.rules);
        access.rules = seeded;
    }
    said
}
