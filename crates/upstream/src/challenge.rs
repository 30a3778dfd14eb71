//! Parsing of `WWW-Authenticate` challenges and the rule for which token
//! realms may receive credentials.

use std::collections::HashMap;

/// An authentication challenge from an upstream's 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChallenge {
    /// `Bearer realm=..,service=..`: fetch a token from the realm.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
    },
    /// `Basic`: send credentials directly.
    Basic,
}

/// Parse one `WWW-Authenticate` header value. `None` for schemes berth does
/// not speak or a Bearer challenge without a realm.
pub fn parse_challenge(header: &str) -> Option<AuthChallenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(AuthChallenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(AuthChallenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
    })
}

/// `key=value` or `key="quoted, value"` pairs separated by commas.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
            value = value.trim().to_owned();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
}

/// Whether credentials may be sent to `realm`. A `host:port` entry of
/// `realm_hosts` allows exactly that host and port. Otherwise the realm must
/// keep the upstream's scheme and port, and be on the upstream's own host, a
/// host of the same registrable domain, or a host listed bare in
/// `realm_hosts`: another port of the same host may be another service, and
/// plain `http` would expose the credentials on the wire.
pub fn realm_allowed(realm: &url::Url, upstream: &url::Url, realm_hosts: &[String]) -> bool {
    let (Some(realm_host), Some(up_host)) = (realm.host_str(), upstream.host_str()) else {
        return false;
    };
    let realm_host = realm_host.to_ascii_lowercase();
    let up_host = up_host.to_ascii_lowercase();
    let realm_port = realm.port_or_known_default();
    let listed = |want_port: bool| {
        realm_hosts
            .iter()
            .any(|entry| match entry.rsplit_once(':') {
                Some((host, port)) => {
                    want_port
                        && host.eq_ignore_ascii_case(&realm_host)
                        && port.parse::<u16>().ok() == realm_port
                }
                None => !want_port && entry.eq_ignore_ascii_case(&realm_host),
            })
    };
    if listed(true) {
        return true;
    }
    if realm.scheme() != upstream.scheme() || realm_port != upstream.port_or_known_default() {
        return false;
    }
    if realm_host == up_host || listed(false) {
        return true;
    }
    // Registrable domains (public suffix list); IP addresses have none.
    let is_ip = |h: &str| h.parse::<std::net::IpAddr>().is_ok() || h.starts_with('[');
    if is_ip(&realm_host) || is_ip(&up_host) {
        return false;
    }
    match (psl::domain_str(&realm_host), psl::domain_str(&up_host)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull,push""#,
        );
        assert_eq!(
            c,
            Some(AuthChallenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(AuthChallenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge(r#"bearer realm=http://h/t , service="a\"b""#),
            Some(AuthChallenge::Bearer {
                realm: "http://h/t".into(),
                service: Some("a\"b".into()),
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn challenges_never_panic(s in ".{0,200}") {
            let _ = parse_challenge(&s);
        }

        #[test]
        fn quoted_params_round_trip(realm in "[a-z:/.,= ]{1,30}", service in "[a-z.,]{0,20}") {
            let header = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
            let parsed = parse_challenge(&header);
            proptest::prop_assert_eq!(parsed, Some(AuthChallenge::Bearer { realm, service: Some(service) }));
        }
    }

    #[test]
    fn realm_rules() {
        let up = url::Url::parse("https://registry-1.docker.io").unwrap();
        let ok =
            |r: &str, extra: &[String]| realm_allowed(&url::Url::parse(r).unwrap(), &up, extra);
        assert!(ok("https://auth.docker.io/token", &[]));
        assert!(ok("https://registry-1.docker.io/token", &[]));
        assert!(!ok("https://evil.example/token", &[]));
        assert!(ok("https://evil.example/token", &["evil.example".into()]));
        assert!(!ok("https://docker.io.evil.example/token", &[]));
        let co = url::Url::parse("https://registry.co.uk").unwrap();
        assert!(!realm_allowed(
            &url::Url::parse("https://evil.co.uk/t").unwrap(),
            &co,
            &[]
        ));
        let local = url::Url::parse("http://127.0.0.1:5000").unwrap();
        let local_ok =
            |r: &str, extra: &[String]| realm_allowed(&url::Url::parse(r).unwrap(), &local, extra);
        assert!(local_ok("http://127.0.0.1:5000/token", &[]));
        assert!(
            !local_ok("http://127.0.0.1:6000/token", &[]),
            "same host, another port"
        );
        assert!(!local_ok(
            "http://127.0.0.1:6000/token",
            &["127.0.0.1".into()]
        ));
        assert!(local_ok(
            "http://127.0.0.1:6000/token",
            &["127.0.0.1:6000".into()]
        ));
        assert!(!local_ok(
            "http://127.0.0.1:6000/token",
            &["127.0.0.1:6001".into()]
        ));
        // Scheme and port, for hosts by name.
        assert!(!ok("http://registry-1.docker.io/token", &[]), "plain http");
        assert!(!ok("http://auth.docker.io/token", &[]), "plain http");
        assert!(!ok("https://auth.docker.io:8443/token", &[]));
        assert!(ok(
            "https://auth.docker.io:8443/token",
            &["auth.docker.io:8443".into()]
        ));
        assert!(ok(
            "http://registry-1.docker.io/token",
            &["registry-1.docker.io:80".into()]
        ));
        assert!(!ok(
            "https://evil.example:8443/token",
            &["evil.example".into()]
        ));
        assert!(ok("HTTPS://Auth.Docker.IO:443/token", &[]));
        assert!(!realm_allowed(
            &url::Url::parse("http://127.0.0.2/token").unwrap(),
            &local,
            &[]
        ));
    }
}
