//! Who may use the mirror: logins (`[auth]`), rate and connection limits
//! per client (`[limits]`), and access rules (`[[access.rules]]`, first
//! match wins). Everything here is off or open by default. Patterns are
//! compiled here, so a bad one is a configuration error naming its key.

use crate::checks::Problems;
use crate::file::{RawAccess, RawAuth, RawLimits, RawRule};
use std::path::PathBuf;

/// What clients without a login may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anonymous {
    /// Anonymous clients may pull.
    #[default]
    Pull,
    /// Every request must log in.
    None,
}

/// `[auth]`: logins checked against an htpasswd file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSettings {
    /// bcrypt htpasswd file; `None`: no logins.
    pub htpasswd_file: Option<PathBuf>,
    /// What clients without a login may do.
    pub anonymous: Anonymous,
}

/// A network, as `ip/prefix`.
pub type Network = ipnet::IpNet;

/// `ip` as rules, limits and networks see it: an IPv4 address mapped into
/// IPv6 (`::ffff:192.0.2.7`, how a dual-stack listener shows IPv4
/// clients) is the IPv4 address it carries.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 @ std::net::IpAddr::V4(_) => v4,
    }
}

/// `[limits]`: per-client limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitSettings {
    /// Requests per second per client IP (and per user); `None`: no limit.
    pub rate: Option<u32>,
    /// Requests a client may make at once above `rate`.
    pub burst: u32,
    /// Connections open at once per client IP; `None`: `[server]`'s cap.
    pub connections: Option<u32>,
    /// Peers allowed to name the client in `X-Forwarded-For` / `X-Real-IP`.
    pub trusted_proxies: Vec<Network>,
}

/// What a rule does to a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Let it through (skipping the rules after).
    Allow,
    /// Refuse it with 403 `DENIED`.
    Deny,
}

/// One access rule: it matches a request when every key it sets matches.
#[derive(Debug, Clone)]
pub struct AccessRule {
    /// Shown to a denied client as the reason.
    pub name: String,
    pub action: RuleAction,
    /// Client networks.
    pub ip: Vec<Network>,
    /// A pattern on the client IP's text.
    pub ip_regex: Option<regex::Regex>,
    pub user_agent: Option<regex::Regex>,
    /// A pattern on the request path.
    pub path: Option<regex::Regex>,
    /// Upstream names.
    pub upstream: Vec<String>,
    /// A pattern on the repository as routed (`library/nginx`).
    pub repository: Option<regex::Regex>,
    /// Logged-in users; `"anonymous"` is the client without a login.
    pub users: Vec<String>,
    /// Countries (ISO 3166 codes, upper case) of the client, as the
    /// trusted proxy's `region_header` or the GeoIP database names it.
    pub region: Vec<String>,
    /// A pattern on the client's country code.
    pub region_regex: Option<regex::Regex>,
    /// The rule applies when its conditions do not all hold (an allow
    /// list written as a deny rule).
    pub negate: bool,
}

impl AccessRule {
    /// Whether the rule looks at the client's country.
    pub fn wants_region(&self) -> bool {
        !self.region.is_empty() || self.region_regex.is_some()
    }
}

impl PartialEq for AccessRule {
    fn eq(&self, other: &Self) -> bool {
        let text = |r: &Option<regex::Regex>| r.as_ref().map(|r| r.as_str().to_owned());
        self.name == other.name
            && self.action == other.action
            && self.ip == other.ip
            && text(&self.ip_regex) == text(&other.ip_regex)
            && text(&self.user_agent) == text(&other.user_agent)
            && text(&self.path) == text(&other.path)
            && self.upstream == other.upstream
            && text(&self.repository) == text(&other.repository)
            && self.users == other.users
            && self.region == other.region
            && text(&self.region_regex) == text(&other.region_regex)
            && self.negate == other.negate
    }
}

/// Who may use the mirror.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessSettings {
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub rules: Vec<AccessRule>,
    /// The header (such as `CF-IPCountry`) in which a trusted proxy names
    /// the client's country.
    pub region_header: Option<http::HeaderName>,
    /// A MaxMind GeoIP2 / GeoLite2 country database: the client's country
    /// when no trusted proxy names it.
    pub geoip_file: Option<PathBuf>,
    /// Origins (`https://ui.example.com`, or `*`) whose browser scripts
    /// may use the API.
    pub cors_origins: Vec<String>,
}

impl AccessSettings {
    /// How these settings let in more than `running` does, one phrase per
    /// way: logins dropped, anonymous pulls opened, rules removed or
    /// changed, rate limits dropped. Empty when they do not.
    pub fn loosens(&self, running: &AccessSettings) -> Vec<&'static str> {
        let mut ways = Vec::new();
        if running.auth.htpasswd_file.is_some() && self.auth.htpasswd_file.is_none() {
            ways.push("[auth] htpasswd_file is gone");
        }
        if running.auth.anonymous == Anonymous::None && self.auth.anonymous != Anonymous::None {
            ways.push("[auth] anonymous opens pulls");
        }
        if running.rules.iter().any(|r| !self.rules.contains(r)) {
            ways.push("access rules are removed or changed");
        }
        if running.limits.rate.is_some() && self.limits.rate.is_none() {
            ways.push("[limits] rate is gone");
        }
        ways
    }

    /// Whether anything limits who may pull: logins required, or an allow
    /// rule (which implies the rules decide).
    pub fn restricts_pulls(&self) -> bool {
        self.auth.anonymous == Anonymous::None
            || self.rules.iter().any(|r| r.action == RuleAction::Allow)
    }
}

fn pattern(p: &mut Problems, key: &str, text: Option<&String>) -> Option<regex::Regex> {
    let text = text?;
    match regex::RegexBuilder::new(text).size_limit(1 << 20).build() {
        Ok(re) => Some(re),
        Err(e) => {
            p.add(key, format!("{text:?} is not a regular expression: {e}"));
            None
        }
    }
}

fn networks(p: &mut Problems, key: &str, list: &[String]) -> Vec<Network> {
    list.iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let parsed = text
                .parse::<Network>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(Network::from));
            parsed
                .map_err(|_| {
                    p.add(
                        format!("{key}[{i}]"),
                        format!("{text:?} is not an address or network like 10.0.0.0/8"),
                    );
                })
                .ok()
        })
        .collect()
}

fn regions(p: &mut Problems, key: &str, list: &[String]) -> Vec<String> {
    list.iter()
        .enumerate()
        .filter_map(|(i, code)| {
            let upper = code.to_ascii_uppercase();
            if upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase()) {
                Some(upper)
            } else {
                p.add(
                    format!("{key}[{i}]"),
                    format!("{code:?} is not a two-letter country code such as \"DE\""),
                );
                None
            }
        })
        .collect()
}

fn auth(p: &mut Problems, raw: Option<&RawAuth>) -> AuthSettings {
    let Some(raw) = raw else {
        return AuthSettings::default();
    };
    let anonymous = match raw.anonymous.as_deref() {
        None | Some("pull") => Anonymous::Pull,
        Some("none") => Anonymous::None,
        Some(other) => {
            p.add(
                "auth.anonymous",
                format!("{other:?} is neither \"pull\" nor \"none\""),
            );
            Anonymous::Pull
        }
    };
    if anonymous == Anonymous::None && raw.htpasswd_file.is_none() {
        p.add(
            "auth.anonymous",
            "\"none\" needs auth.htpasswd_file: nobody could log in",
        );
    }
    AuthSettings {
        htpasswd_file: raw.htpasswd_file.as_deref().map(PathBuf::from),
        anonymous,
    }
}

fn limits(p: &mut Problems, raw: Option<&RawLimits>) -> LimitSettings {
    let Some(raw) = raw else {
        return LimitSettings::default();
    };
    if raw.rate == Some(0) {
        p.add(
            "limits.rate",
            "must be at least 1 (leave it out for no limit)",
        );
    }
    if raw.connections == Some(0) {
        p.add("limits.connections", "must be at least 1");
    }
    if raw.burst.is_some() && raw.rate.is_none() {
        p.add("limits.burst", "needs limits.rate");
    }
    LimitSettings {
        rate: raw.rate.filter(|r| *r > 0),
        burst: raw.burst.unwrap_or(0),
        connections: raw.connections.filter(|c| *c > 0),
        trusted_proxies: networks(
            p,
            "limits.trusted_proxies",
            raw.trusted_proxies.as_deref().unwrap_or_default(),
        ),
    }
}

fn rule(p: &mut Problems, i: usize, raw: &RawRule) -> AccessRule {
    let key = format!("access.rules[{i}]");
    let name = raw.name.clone().unwrap_or_else(|| {
        p.add(
            format!("{key}.name"),
            "every rule needs a name: it is the reason a denied client sees",
        );
        String::new()
    });
    let action = match raw.action.as_deref() {
        Some("allow") => RuleAction::Allow,
        Some("deny") => RuleAction::Deny,
        other => {
            p.add(
                format!("{key}.action"),
                format!(
                    "{:?} is neither \"allow\" nor \"deny\"",
                    other.unwrap_or("")
                ),
            );
            RuleAction::Deny
        }
    };
    let rule = AccessRule {
        name,
        action,
        ip: networks(
            p,
            &format!("{key}.ip"),
            raw.ip.as_deref().unwrap_or_default(),
        ),
        ip_regex: pattern(p, &format!("{key}.ip_regex"), raw.ip_regex.as_ref()),
        user_agent: pattern(p, &format!("{key}.user_agent"), raw.user_agent.as_ref()),
        path: pattern(p, &format!("{key}.path"), raw.path.as_ref()),
        upstream: raw.upstream.clone().unwrap_or_default(),
        repository: pattern(p, &format!("{key}.repository"), raw.repository.as_ref()),
        users: raw.users.clone().unwrap_or_default(),
        region: regions(
            p,
            &format!("{key}.region"),
            raw.region.as_deref().unwrap_or_default(),
        ),
        region_regex: pattern(p, &format!("{key}.region_regex"), raw.region_regex.as_ref()),
        negate: raw.negate.unwrap_or(false),
    };
    let matches_nothing_in_particular = rule.ip.is_empty()
        && rule.ip_regex.is_none()
        && rule.user_agent.is_none()
        && rule.path.is_none()
        && rule.upstream.is_empty()
        && rule.repository.is_none()
        && rule.users.is_empty()
        && !rule.wants_region();
    // A rule with no condition would match every request: a catch-all
    // must say so.
    if matches_nothing_in_particular {
        p.add(
            key,
            "sets no condition, so it would match every request; say so with ip = [\"0.0.0.0/0\", \"::/0\"]",
        );
    }
    rule
}

pub(super) fn build(
    p: &mut Problems,
    auth_raw: Option<&RawAuth>,
    limits_raw: Option<&RawLimits>,
    access_raw: Option<&RawAccess>,
) -> AccessSettings {
    let rules: Vec<AccessRule> = access_raw
        .map(|a| {
            a.rules
                .iter()
                .enumerate()
                .map(|(i, r)| rule(p, i, r))
                .collect()
        })
        .unwrap_or_default();
    let region_header = access_raw
        .and_then(|a| a.region_header.as_deref())
        .and_then(|h| {
            h.parse::<http::HeaderName>()
                .map_err(|_| {
                    p.add(
                        "access.region_header",
                        format!("{h:?} is not a header name"),
                    )
                })
                .ok()
        });
    let geoip_file = access_raw
        .and_then(|a| a.geoip_file.as_deref())
        .map(PathBuf::from);
    if region_header.is_none() && geoip_file.is_none() {
        for (i, rule) in rules.iter().enumerate() {
            if rule.wants_region() {
                p.add(
                    format!("access.rules[{i}].region"),
                    "needs access.geoip_file (a GeoIP2 country database) or access.region_header (such as \"CF-IPCountry\") from a proxy in limits.trusted_proxies",
                );
            }
        }
    }
    let cors_origins = access_raw
        .and_then(|a| a.cors_origins.clone())
        .unwrap_or_default();
    for (i, origin) in cors_origins.iter().enumerate() {
        let well_formed = origin == "*"
            || url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && !origin.ends_with('/')
            });
        if !well_formed {
            p.add(
                format!("access.cors_origins[{i}]"),
                format!("{origin:?} is not an origin like \"https://ui.example.com\" (scheme and host, no path) or \"*\""),
            );
        }
    }
    AccessSettings {
        auth: auth(p, auth_raw),
        limits: limits(p, limits_raw),
        rules,
        region_header,
        geoip_file,
        cors_origins,
    }
}
