//! Logins and rules through [`Access`], as the edge asks them.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{Access, Facts, Refusal};
use base64::Engine as _;
use berth_config::Config;
use http::HeaderMap;

fn access(extra: &str, dir: &std::path::Path) -> Access {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let file = dir.join("htpasswd");
    std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
    let text = format!(
        "builtin_upstreams = false\n[auth]\nhtpasswd_file = {:?}\n{extra}\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\n",
        file.display().to_string()
    );
    let config = Config::from_toml(&text, &|_| None).unwrap();
    Access::load(&config.access).unwrap()
}

fn basic(user: &str, password: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    h.insert("authorization", format!("Basic {token}").parse().unwrap());
    h
}

#[tokio::test]
async fn logins_are_checked_and_failures_limited() {
    let dir = tempfile::tempdir().unwrap();
    let access = access("", dir.path());
    let ip = "192.0.2.1".parse().unwrap();
    assert_eq!(access.login(ip, &HeaderMap::new(), false).await, Ok(None));
    assert!(matches!(
        access.login(ip, &HeaderMap::new(), true).await,
        Err(Refusal::Unauthorized(_))
    ));
    let ok = access.login(ip, &basic("alice", "s3cret"), false).await;
    assert_eq!(ok, Ok(Some("alice".to_owned())));
    let mut refusals = Vec::new();
    for _ in 0..20 {
        refusals.push(
            access
                .login(ip, &basic("alice", "guess"), false)
                .await
                .unwrap_err(),
        );
    }
    assert!(matches!(refusals[0], Refusal::Unauthorized(_)));
    assert!(
        matches!(refusals[19], Refusal::TooManyRequests(_)),
        "{refusals:?}"
    );
    // Another address is not held back by this one's failures.
    let other = "192.0.2.2".parse().unwrap();
    assert_eq!(
        access.login(other, &basic("alice", "s3cret"), false).await,
        Ok(Some("alice".to_owned()))
    );
}

#[tokio::test]
async fn anonymous_none_asks_every_request_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let access = access("anonymous = \"none\"", dir.path());
    let ip = "192.0.2.1".parse().unwrap();
    assert!(matches!(
        access.login(ip, &HeaderMap::new(), false).await,
        Err(Refusal::Unauthorized(_))
    ));
}

#[test]
fn the_first_matching_rule_decides() {
    let text = r#"
        builtin_upstreams = false
        [[access.rules]]
        name = "office"
        action = "allow"
        ip = ["10.0.0.0/8"]
        [[access.rules]]
        name = "no-scanners"
        action = "deny"
        user_agent = "(?i)masscan|zgrab"
        [[access.rules]]
        name = "private"
        action = "deny"
        repository = "^secret/"
        users = ["anonymous"]
        [[upstreams]]
        name = "a.io"
        url = "https://a.io"
    "#;
    let config = Config::from_toml(text, &|_| None).unwrap();
    let access = Access::load(&config.access).unwrap();
    let paths = ["/v2/x".to_owned()];
    let verdict = |ip: &str, uas: &[&str], repo: &str, user: Option<&str>| {
        let user_agents: Vec<String> = uas.iter().map(|s| (*s).to_owned()).collect();
        access.rules(&Facts {
            ip: ip.parse().unwrap(),
            user_agents: &user_agents,
            paths: &paths,
            upstream: Some("a.io"),
            repository: Some(repo),
            user,
            region: None,
        })
    };
    assert_eq!(verdict("10.1.2.3", &["masscan"], "x", None), Ok(()));
    let scanners = Err(Refusal::Denied("no-scanners".to_owned()));
    assert_eq!(verdict("192.0.2.1", &["Masscan/1.0"], "x", None), scanners);
    // A second User-Agent header does not hide the first.
    assert_eq!(
        verdict("192.0.2.1", &["docker/27", "zgrab/0.x"], "x", None),
        scanners
    );
    assert_eq!(
        verdict("192.0.2.1", &["zgrab/0.x", "docker/27"], "x", None),
        scanners
    );
    assert_eq!(
        verdict("192.0.2.1", &["docker"], "secret/app", None),
        Err(Refusal::Denied("private".to_owned()))
    );
    assert_eq!(
        verdict("192.0.2.1", &["docker"], "secret/app", Some("alice")),
        Ok(())
    );
}
