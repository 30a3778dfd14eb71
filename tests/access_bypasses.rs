//! Ways around the access policy that must not work, against the real
//! upstream: IPv4 clients of a dual-stack listener (and a proxy's
//! `X-Forwarded-For` forms) still meet IPv4 rules; a path rule is not
//! dodged by another spelling of the same request; a second or a
//! non-UTF-8 `User-Agent` does not hide from a deny rule; and a burst of
//! concurrent wrong passwords is counted as it starts, so it costs a
//! bounded number of bcrypt runs while a real login is served.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, TestRegistry, upstream_toml};
use std::net::IpAddr;

fn hub(up: &TestRegistry) -> String {
    upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true",
    )
}

/// A client whose requests leave from `ip` (any 127.0.0.0/8 address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv4_rules_hold_on_a_dual_stack_listener() {
    let up = TestRegistry::start().await;
    // An IPv6 socket on the IPv4-mapped loopback address: IPv4 clients
    // arrive as ::ffff:127.0.0.x, as on a `[::]` listener.
    let berth = Berth::start(&format!(
        r#"listen = "[::ffff:127.0.0.1]:0"
[limits]
trusted_proxies = ["127.0.0.1/32"]
[[access.rules]]
name = "blocked-net"
action = "deny"
ip = ["127.0.0.3/32", "203.0.113.0/24"]
{}"#,
        hub(&up)
    ));
    let manifest = format!(
        "http://127.0.0.1:{}/v2/library/small/manifests/latest",
        berth.port()
    );
    assert_eq!(status(client_from("127.0.0.2").get(&manifest)).await, 200);
    assert_eq!(status(client_from("127.0.0.3").get(&manifest)).await, 403);
    // The trusted proxy names a blocked client in each form proxies use.
    for forwarded in [
        "203.0.113.7",
        "203.0.113.7:4711",
        "::ffff:203.0.113.7",
        "[::ffff:203.0.113.7]:80",
    ] {
        let r = reqwest::Client::new()
            .get(&manifest)
            .header("x-forwarded-for", forwarded);
        assert_eq!(status(r).await, 403, "{forwarded}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_rule_sees_the_request_not_its_spelling() {
    let up = TestRegistry::start().await;
    let berth = Berth::start(&format!(
        r#"[[access.rules]]
name = "no-small"
action = "deny"
path = "^/v2/library/small/"
{}"#,
        hub(&up)
    ));
    let client = reqwest::Client::new();
    up.reset_requests();
    for path in [
        "library/small/manifests/latest",
        "small/manifests/latest",
        "docker.io/library/small/manifests/latest",
        "docker.io/small/manifests/latest",
        "small/manifests/latest?ns=docker.io",
        "library/small/manifests/latest?ns=docker.io",
    ] {
        let url = format!("{}/v2/{path}", berth.url());
        assert_eq!(status(client.get(&url)).await, 403, "{path}");
    }
    assert!(up.requests_beyond_ping().is_empty(), "{:?}", up.requests());
    let other = format!("{}/v2/multi/manifests/latest", berth.url());
    assert_eq!(status(client.get(&other)).await, 200);

    // The seed's allow list (PATHNAME_REGEX) admits every spelling of an
    // allowed repository, and nothing else.
    let allow = Berth::start_with_env(&hub(&up), &[("PATHNAME_REGEX", "^/v2/library/small/")]);
    for (path, want) in [
        ("small/manifests/latest", 200),
        ("docker.io/small/manifests/latest", 200),
        ("library/small/manifests/latest", 200),
        ("multi/manifests/latest", 403),
    ] {
        let url = format!("{}/v2/{path}", allow.url());
        assert_eq!(status(client.get(&url)).await, want, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_or_undecodable_user_agent_does_not_hide_from_a_deny_rule() {
    let up = TestRegistry::start().await;
    let berth = Berth::start(&format!(
        r#"[[access.rules]]
name = "no-scanners"
action = "deny"
user_agent = "(?i)masscan"
{}"#,
        hub(&up)
    ));
    let manifest = format!("{}/v2/library/small/manifests/latest", berth.url());
    let client = reqwest::Client::new();
    let ok = client.get(&manifest).header("user-agent", "docker/27.0");
    assert_eq!(status(ok).await, 200);
    for second in [
        http::HeaderValue::from_static("masscan/1.3"),
        http::HeaderValue::from_bytes(b"Masscan/1.3 \xff\xfe").unwrap(),
    ] {
        let r = client
            .get(&manifest)
            .header("user-agent", "docker/27.0")
            .header("user-agent", second.clone());
        assert_eq!(status(r).await, 403, "{second:?}");
        let alone = client.get(&manifest).header("user-agent", second.clone());
        assert_eq!(status(alone).await, 403, "{second:?} alone");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wrong_passwords_are_counted_as_they_start() {
    let up = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("correct horse", 8).unwrap();
    std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
    let berth = Berth::start(&format!(
        "[auth]\nhtpasswd_file = {:?}\n{}",
        file.display().to_string(),
        hub(&up)
    ));
    let ping = format!("{}/v2/", berth.url());
    let attacker = client_from("127.0.0.5");
    let guesses = (0..100).map(|i| {
        let request = attacker
            .get(&ping)
            .basic_auth("alice", Some(format!("guess {i}")));
        tokio::spawn(async move { status(request).await })
    });
    let guesses: Vec<_> = guesses.collect();
    // A real login from elsewhere, in the middle of the storm.
    let real = client_from("127.0.0.6")
        .get(&ping)
        .basic_auth("alice", Some("correct horse"));
    assert_eq!(status(real).await, 200);
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for g in guesses {
        *answers.entry(g.await.unwrap()).or_default() += 1;
    }
    let refused = answers.get(&401).copied().unwrap_or(0);
    let limited = answers.get(&429).copied().unwrap_or(0);
    // Ten failed logins in a row, then one a second: a few more may pass
    // while the burst runs, never most of them.
    assert!(refused <= 15, "{answers:?}");
    assert_eq!(refused + limited, 100, "{answers:?}");
}
