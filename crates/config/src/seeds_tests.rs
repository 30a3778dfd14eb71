//! The seed variables against the built-in upstreams and the file.

use crate::{AuthMode, Config, RuleAction};
use std::time::Duration;

fn with_env(text: &str, vars: &[(&str, &str)]) -> Config {
    Config::from_toml(text, &|k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

#[test]
fn upstream_variables_reach_the_built_ins_unless_the_file_says_otherwise() {
    let c = with_env(
        "[[upstreams]]\nname = \"ghcr.io\"\nurl = \"https://ghcr.io\"\nheader_timeout = \"3s\"\n",
        &[
            ("PROXY_HOSTNAME", "hub.internal:5000"),
            ("REQUEST_TIMEOUT", "1500"),
            ("MAX_RETRIES", "7"),
        ],
    );
    let hub = c.upstreams.iter().find(|u| u.name == "docker.io").unwrap();
    assert!(hub.default && hub.auto_library);
    assert_eq!(hub.url.as_str(), "https://hub.internal:5000/");
    assert_eq!(hub.resilience.header_timeout, Duration::from_millis(1500));
    assert_eq!(hub.resilience.retries, 7);
    let ghcr = c.upstreams.iter().find(|u| u.name == "ghcr.io").unwrap();
    assert_eq!(ghcr.resilience.header_timeout, Duration::from_secs(3));
    assert_eq!(ghcr.resilience.retries, 7);
    assert!(c.upstreams.iter().any(|u| u.name == "quay.io"));
    assert!(
        c.seed_mappings
            .iter()
            .any(|l| l == "REQUEST_TIMEOUT ignored for ghcr.io: header_timeout is set"),
        "{:?}",
        c.seed_mappings
    );
}

#[test]
fn lists_become_deny_rules_before_the_files_own() {
    let c = with_env(
        "[[access.rules]]\nname = \"mine\"\naction = \"allow\"\nip = [\"10.0.0.0/8\"]\n",
        &[("UA_BLACKLIST_REGEX", "bot"), ("PATHNAME_REGEX", "^/v2/")],
    );
    let rules = &c.access.rules;
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["seed-ua-blacklist", "seed-pathname", "mine"]);
    assert!(rules[..2].iter().all(|r| r.action == RuleAction::Deny));
    assert!(!rules[0].negate && rules[1].negate);
}

#[test]
fn docxy_and_seed_003_variables() {
    let (cert, key) = ("/etc/berth/cert.pem", "/etc/berth/key.pem");
    let vars = [
        ("CERT_PATH", cert),
        ("KEY_PATH", key),
        ("PORT", "8443"),
        ("CUSTOM_DOMAIN", "Mirror.Example.org"),
    ];
    let c = with_env("", &vars);
    assert_eq!(c.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(c.domain.as_deref(), Some("mirror.example.org"));
    let tls = c.tls.unwrap();
    assert_eq!(tls.certs[0].cert_file.display().to_string(), cert);
    assert_eq!(tls.certs[0].key_file.display().to_string(), key);
    assert!(c.upstreams.iter().all(|u| u.auth_mode == AuthMode::Managed));
}
