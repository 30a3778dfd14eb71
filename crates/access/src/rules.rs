//! Access rules: the first rule whose every condition holds decides; a
//! request no rule matches is let through.

use berth_config::{AccessRule, RuleAction};
use std::net::IpAddr;

/// What the rules look at in a request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The client's address, canonical (see `client`).
    pub ip: IpAddr,
    /// Every `User-Agent` value the request carries, decoded lossily
    /// (`[""]` without one): a pattern holds when it matches any of them.
    pub user_agents: &'a [String],
    /// The request's path in its canonical forms, never as the client
    /// spelled it: `/v2/<repository>/<endpoint>` and
    /// `/v2/<upstream>/<repository>/<endpoint>` for a routed request (the
    /// repository as routed, `library/` added), the path itself for
    /// anything else (`/v2/`, `/token`). A pattern holds when it matches
    /// any of them.
    pub paths: &'a [String],
    /// The upstream it was routed to (not known for `/v2/`).
    pub upstream: Option<&'a str>,
    /// The repository as routed (`library/nginx`).
    pub repository: Option<&'a str>,
    /// The logged-in user; `None` for an anonymous client.
    pub user: Option<&'a str>,
    /// The client's country, as a trusted proxy named it.
    pub region: Option<&'a str>,
}

/// The name rules use for a client without a login.
pub const ANONYMOUS: &str = "anonymous";

/// Whether `rule` applies: its conditions all hold (or, for a negated
/// rule, do not).
fn matches(rule: &AccessRule, facts: &Facts<'_>, ip_text: &str) -> bool {
    holds(rule, facts, ip_text) != rule.negate
}

/// Whether every condition of `rule` holds: the cheap ones first, the
/// patterns last.
fn holds(rule: &AccessRule, facts: &Facts<'_>, ip_text: &str) -> bool {
    let text = |re: &Option<regex::Regex>, value: Option<&str>| {
        re.as_ref()
            .is_none_or(|re| value.is_some_and(|v| re.is_match(v)))
    };
    let any = |re: &Option<regex::Regex>, values: &[String]| {
        re.as_ref()
            .is_none_or(|re| values.iter().any(|v| re.is_match(v)))
    };
    (rule.ip.is_empty() || rule.ip.iter().any(|n| n.contains(&facts.ip)))
        && (rule.upstream.is_empty()
            || facts
                .upstream
                .is_some_and(|u| rule.upstream.iter().any(|r| r == u)))
        && (rule.users.is_empty()
            || rule
                .users
                .iter()
                .any(|u| u == facts.user.unwrap_or(ANONYMOUS)))
        && (rule.region.is_empty()
            || facts
                .region
                .is_some_and(|r| rule.region.iter().any(|c| c.eq_ignore_ascii_case(r))))
        && any(&rule.path, facts.paths)
        && text(&rule.repository, facts.repository)
        && any(&rule.user_agent, facts.user_agents)
        && text(&rule.ip_regex, Some(ip_text))
        && text(&rule.region_regex, facts.region)
}

/// The rule that denies `facts`, if the first rule matching them denies.
pub fn denying<'r>(rules: &'r [AccessRule], facts: &Facts<'_>) -> Option<&'r AccessRule> {
    let ip_text = if rules.iter().any(|r| r.ip_regex.is_some()) {
        facts.ip.to_string()
    } else {
        String::new()
    };
    rules
        .iter()
        .find(|rule| matches(rule, facts, &ip_text))
        .filter(|rule| rule.action == RuleAction::Deny)
}
