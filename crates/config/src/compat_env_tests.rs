//! The seed variables against the built-in upstreams and the file.

use crate::{AuthMode, Config, RuleAction};
use std::time::Duration;

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, crate::ConfigError> {
    Config::from_toml(text, &|k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
}

fn with_env(text: &str, vars: &[(&str, &str)]) -> Config {
    parse(text, vars).unwrap()
}

fn refusal(text: &str, vars: &[(&str, &str)]) -> String {
    parse(text, vars).unwrap_err().to_string()
}

fn upstream<'c>(c: &'c Config, name: &str) -> &'c crate::UpstreamConfig {
    c.upstreams.iter().find(|u| u.name == name).unwrap()
}

fn said(c: &Config, line: &str) -> bool {
    c.seed_mappings.iter().any(|l| l == line)
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
            .any(|l| l == "REQUEST_TIMEOUT ignored for ghcr.io: header_timeout is set in the file"),
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

#[test]
fn proxy_hostname_defers_to_the_files_url() {
    let file = "[[upstreams]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:5001\"\n";
    let c = with_env(file, &[("PROXY_HOSTNAME", "elsewhere.example")]);
    let hub = upstream(&c, "docker.io");
    assert_eq!(hub.url.as_str(), "http://127.0.0.1:5001/");
    assert!(
        said(
            &c,
            "PROXY_HOSTNAME ignored: upstreams[0].url is set in the file"
        ),
        "{:?}",
        c.seed_mappings
    );
}

#[test]
fn proxy_hostname_may_be_a_url_whose_scheme_wins() {
    let c = with_env(
        "",
        &[
            ("PROXY_HOSTNAME", "https://registry-1.docker.io"),
            ("PROXY_PROTOCOL", "http"),
        ],
    );
    assert_eq!(
        upstream(&c, "docker.io").url.as_str(),
        "https://registry-1.docker.io/"
    );
    assert!(said(
        &c,
        "PROXY_PROTOCOL ignored: PROXY_HOSTNAME is a URL with its own scheme"
    ));
    for bad in [
        "https://",
        "ftp://mirror.example",
        "mirror.example/v2",
        "a b",
    ] {
        let e = refusal("", &[("PROXY_HOSTNAME", bad)]);
        assert!(e.contains("PROXY_HOSTNAME"), "{bad}: {e}");
        assert!(!e.contains("url"), "{bad}: {e}");
    }
    let e = refusal(
        "",
        &[
            ("PROXY_HOSTNAME", "mirror.example"),
            ("PROXY_PROTOCOL", "gopher"),
        ],
    );
    assert!(e.contains("PROXY_PROTOCOL"), "{e}");
    let c = with_env("", &[("PROXY_PROTOCOL", "http")]);
    assert!(said(
        &c,
        "PROXY_PROTOCOL ignored: it applies only with PROXY_HOSTNAME"
    ));
}

#[test]
fn a_long_request_timeout_raises_the_request_deadline_too() {
    let c = with_env("", &[("REQUEST_TIMEOUT", "60000")]);
    let r = &upstream(&c, "docker.io").resilience;
    assert_eq!(r.header_timeout, Duration::from_secs(60));
    assert_eq!(r.request_deadline, Duration::from_secs(60));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let c = with_env("", &[("REQUEST_TIMEOUT", "1500")]);
    let r = &upstream(&c, "docker.io").resilience;
    assert_eq!(r.header_timeout, Duration::from_millis(1500));
    assert_eq!(r.request_deadline, Duration::from_secs(20));
}

#[test]
fn a_per_attempt_timeout_set_past_the_deadline_is_warned_of() {
    let quiet = with_env("", &[]);
    assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
    let c = with_env(
        "[[upstreams]]\nname = \"ghcr.io\"\nheader_timeout = \"45s\"\n",
        &[],
    );
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "upstream ghcr.io: header_timeout (45s) is longer than request_deadline (20s)"
        ),
        "{warnings:?}"
    );
}

#[test]
fn too_many_retries_are_refused_once_by_the_variables_name() {
    let e = refusal("", &[("MAX_RETRIES", "11")]);
    assert_eq!(e.matches("MAX_RETRIES").count(), 1, "{e}");
    assert!(!e.contains("retries:") && !e.contains(".retries"), "{e}");
    let c = with_env("", &[("MAX_RETRIES", "10")]);
    assert_eq!(upstream(&c, "quay.io").resilience.retries, 10);
}

#[test]
fn registry_domain_is_the_served_name_and_the_acme_domain() {
    let c = with_env("", &[("REGISTRY_DOMAIN", "Mirror.Example.org")]);
    assert_eq!(c.domain.as_deref(), Some("mirror.example.org"));
    let acme = "[tls.acme]\ncontact = \"mailto:ops@example.org\"\n";
    let c = with_env(acme, &[("REGISTRY_DOMAIN", "mirror.example.org")]);
    let tls = c.tls.unwrap();
    assert_eq!(tls.acme.unwrap().domains, ["mirror.example.org"]);
    let c = with_env(
        "domain = \"file.example.org\"\n",
        &[("REGISTRY_DOMAIN", "mirror.example.org")],
    );
    assert_eq!(c.domain.as_deref(), Some("file.example.org"));
    assert!(said(&c, "REGISTRY_DOMAIN ignored: domain is set"));
}

#[test]
fn variables_berth_ignores_are_named_with_the_reason() {
    let c = with_env("", &[("DEBUG", "0"), ("UA_BLACKLIST_REGEX", "")]);
    assert!(said(
        &c,
        "DEBUG ignored: \"0\" is not one of 1, true, yes, on"
    ));
    assert!(said(&c, "UA_BLACKLIST_REGEX ignored: it is empty"));
    let lines = crate::ignored_variables(["PATH", "TRAEFIK_ACME_EMAIL"]);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("TRAEFIK_ACME_EMAIL ignored: "));
}

#[test]
fn an_entry_named_like_a_built_in_overrides_only_the_keys_it_sets() {
    let file = "[[upstreams]]\nname = \"k8s.gcr.io\"\nretries = 5\n\n\
                [[upstreams]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:5001\"\n";
    let c = with_env(file, &[]);
    let old = upstream(&c, "k8s.gcr.io");
    assert_eq!(old.host_prefix.as_deref(), Some("k8s-gcr"));
    assert_eq!(old.url.as_str(), "https://k8s.gcr.io/");
    assert_eq!(old.resilience.retries, 5);
    let hub = upstream(&c, "docker.io");
    assert_eq!(hub.host_prefix.as_deref(), Some("docker"));
    assert!(hub.default && hub.auto_library);
    assert_eq!(hub.url.as_str(), "http://127.0.0.1:5001/");
    assert_eq!(
        c.upstreams.iter().filter(|u| u.name == "docker.io").count(),
        1
    );
    let e = refusal("[[upstreams]]\nname = \"quay.io\"\nretries = 99\n", &[]);
    assert!(e.contains("upstreams[0].retries"), "{e}");
}
