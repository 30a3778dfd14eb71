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

use crate::builtin;
use crate::checks::Problems;
use crate::file::{RawAccess, RawConfig, RawRule, RawTls, RawUpstream};

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
pub(super) fn apply(raw: &mut RawConfig, env: Env<'_>, p: &mut Problems) -> Vec<String> {
    let mut said = Vec::new();
    let mut set = |var: &str, key: &str, taken: bool, value: &str| {
        said.push(if taken {
            format!("{var} ignored: {key} is set")
        } else {
            format!("{var} → {key} = {value:?}")
        });
        !taken
    };
    if let Some(v) = env("CUSTOM_DOMAIN")
        && set(
            "CUSTOM_DOMAIN",
            "domain",
            raw.domain.is_some() || env("BERTH_DOMAIN").is_some(),
            &v,
        )
    {
        raw.domain = Some(v);
    }
    if let Some(v) = env("URL302")
        && set(
            "URL302",
            "url302",
            raw.url302.is_some() || env("BERTH_URL302").is_some(),
            &v,
        )
    {
        raw.url302 = Some(v);
    }
    if let Some(v) = env("PORT") {
        match v.parse::<u16>() {
            Ok(port) if port > 0 => {
                let listen = format!("0.0.0.0:{port}");
                let taken = raw.listen.is_some() || env("BERTH_LISTEN").is_some();
                if set("PORT", "listen", taken, &listen) {
                    raw.listen = Some(listen);
                }
            }
            _ => p.add("PORT", format!("{v:?} is not a port from 1 to 65535")),
        }
    }
    if let Some(v) = env("DEBUG")
        .filter(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        && set(
            "DEBUG",
            "log_level",
            raw.log_level.is_some() || env("BERTH_LOG_LEVEL").is_some(),
            "debug",
        )
    {
        let _ = v;
        raw.log_level = Some("debug".to_owned());
    }
    for (var, key) in [("CERT_PATH", "cert_file"), ("KEY_PATH", "key_file")] {
        let Some(v) = env(var) else { continue };
        let tls = raw.tls.get_or_insert_with(RawTls::default);
        let slot = if key == "cert_file" {
            &mut tls.cert_file
        } else {
            &mut tls.key_file
        };
        if set(var, &format!("tls.{key}"), slot.is_some(), &v) {
            *slot = Some(v);
        }
    }
    upstream_settings(raw, env, p, &mut said);
    said.extend(rules(raw, env));
    said
}

/// `PROXY_HOSTNAME` / `PROXY_PROTOCOL` for the default upstream, and
/// `REQUEST_TIMEOUT` / `MAX_RETRIES` for every upstream.
fn upstream_settings(raw: &mut RawConfig, env: Env<'_>, p: &mut Problems, said: &mut Vec<String>) {
    let host = env("PROXY_HOSTNAME");
    let timeout = env("REQUEST_TIMEOUT").and_then(|v| match v.parse::<u64>() {
        Ok(ms) if ms > 0 => Some(format!("{ms}ms")),
        _ => {
            p.add(
                "REQUEST_TIMEOUT",
                format!("{v:?} is not a number of milliseconds"),
            );
            None
        }
    });
    let retries = env("MAX_RETRIES").and_then(|v| match v.parse::<u32>() {
        Ok(n) => Some(n),
        Err(_) => {
            p.add("MAX_RETRIES", format!("{v:?} is not a whole number"));
            None
        }
    });
    if host.is_none() && timeout.is_none() && retries.is_none() {
        return;
    }
    materialize_builtins(raw);
    if let Some(host) = host {
        let scheme = env("PROXY_PROTOCOL").unwrap_or_else(|| "https".to_owned());
        let url = format!(
            "{}://{host}",
            scheme.trim_end_matches("://").trim_end_matches(':')
        );
        match raw.upstreams.iter_mut().find(|u| u.default == Some(true)) {
            Some(u) => {
                let name = u.name.clone().unwrap_or_default();
                said.push(format!("PROXY_HOSTNAME → upstream {name} url = {url:?}"));
                u.url = Some(url);
            }
            None => p.add(
                "PROXY_HOSTNAME",
                "no upstream is the default to point at it",
            ),
        }
    }
    for u in &mut raw.upstreams {
        let name = u.name.clone().unwrap_or_default();
        if let Some(t) = &timeout {
            if u.header_timeout.is_some() {
                said.push(format!(
                    "REQUEST_TIMEOUT ignored for {name}: header_timeout is set"
                ));
            } else {
                u.header_timeout = Some(t.clone());
            }
        }
        if let Some(n) = retries {
            if u.retries.is_some() {
                said.push(format!("MAX_RETRIES ignored for {name}: retries is set"));
            } else {
                u.retries = Some(n);
            }
        }
    }
    if let Some(t) = &timeout {
        said.push(format!(
            "REQUEST_TIMEOUT → every upstream's header_timeout = {t:?}"
        ));
    }
    if let Some(n) = retries {
        said.push(format!("MAX_RETRIES → every upstream's retries = {n}"));
    }
}

/// Write the built-in upstreams into the file's list, as the merge would,
/// so that settings can be applied to them too.
fn materialize_builtins(raw: &mut RawConfig) {
    if !raw.builtin_upstreams.unwrap_or(true) {
        return;
    }
    let file_default = raw.upstreams.iter().any(|u| u.default == Some(true));
    let mut builtins: Vec<RawUpstream> = builtin::upstreams()
        .into_iter()
        .filter(|b| !raw.upstreams.iter().any(|u| u.name == b.name))
        .map(|mut b| {
            if file_default {
                b.default = Some(false);
            }
            b
        })
        .collect();
    builtins.append(&mut raw.upstreams);
    raw.upstreams = builtins;
    raw.builtin_upstreams = Some(false);
}

/// The allow and block lists as deny rules, before the file's own.
fn rules(raw: &mut RawConfig, env: Env<'_>) -> Vec<String> {
    let mut said = Vec::new();
    let mut seeded = Vec::new();
    for (var, name, negate, pattern) in LISTS {
        let Some(regex) = env(var).filter(|v| !v.is_empty()) else {
            continue;
        };
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
