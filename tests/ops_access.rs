//! The operational and admin surfaces against the real binary: on the
//! public port, `/stats`, `/routes`, `/metrics` and `/dashboard` obey
//! `[auth]` (a login or the admin token) and the access rules, while
//! `/health` stays open; on a token-less admin listener, a request a web
//! page could send (another origin, a form's content type) changes
//! nothing, and a host name other than an address, `localhost` or the
//! domain (DNS rebinding) is refused.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, TestRegistry, upstream_toml};
use std::net::IpAddr;

const TOKEN: &str = "0123456789abcdef-admin";
const OPS: [&str; 4] = ["/stats", "/routes", "/metrics", "/dashboard"];

fn hub(up: &TestRegistry) -> String {
    upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ops_routes_on_the_public_port_obey_logins_and_rules() {
    let up = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
    let berth = Berth::start(&format!(
        r#"[auth]
htpasswd_file = {:?}
anonymous = "none"
[admin]
token = {TOKEN:?}
[[access.rules]]
name = "blocked"
action = "deny"
ip = ["127.0.0.3/32"]
{}"#,
        file.display().to_string(),
        hub(&up)
    ));
    let client = reqwest::Client::new();
    let blocked = reqwest::Client::builder()
        .local_address("127.0.0.3".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    for path in OPS {
        let url = format!("{}{path}", berth.url());
        let anonymous = client.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        assert!(
            anonymous.headers().contains_key("www-authenticate"),
            "{path}"
        );
        let body = anonymous.text().await.unwrap();
        assert!(
            body.contains("UNAUTHORIZED") && !body.contains("docker.io"),
            "{path}: {body}"
        );
        let wrong = client.get(&url).basic_auth("alice", Some("nope"));
        assert_eq!(wrong.send().await.unwrap().status(), 401, "{path}");
        let login = client.get(&url).basic_auth("alice", Some("correct horse"));
        assert_eq!(login.send().await.unwrap().status(), 200, "{path}");
        let token = client.get(&url).bearer_auth(TOKEN);
        assert_eq!(token.send().await.unwrap().status(), 200, "{path}");
        // The rules hold whoever logs in.
        let denied = blocked.get(&url).basic_auth("alice", Some("correct horse"));
        assert_eq!(denied.send().await.unwrap().status(), 403, "{path}");
    }
    let health = client
        .get(format!("{}/health", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tokenless_admin_listener_refuses_what_a_web_page_could_send() {
    let up = TestRegistry::start().await;
    let berth = Berth::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n{}", hub(&up)));
    let admin = berth.admin_url().await;
    let client = reqwest::Client::new();
    // Something to purge.
    let manifest = format!("{}/v2/library/small/manifests/latest", berth.url());
    assert_eq!(client.get(&manifest).send().await.unwrap().status(), 200);
    let purge = format!("{admin}/admin/cache/purge?pattern=docker.io/**");
    let attempts = [
        (
            "a form from another site",
            vec![
                ("origin", "http://evil.example"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        ),
        (
            "a script from another site",
            vec![("origin", "http://evil.example")],
        ),
        (
            "another site, by fetch metadata",
            vec![("sec-fetch-site", "cross-site")],
        ),
        ("a plain-text body", vec![("content-type", "text/plain")]),
        ("a rebound name", vec![("host", "evil.example")]),
    ];
    for (what, headers) in attempts {
        let mut request = client.post(&purge);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(status == 403 || status == 421, "{what}: {status} {body}");
        assert!(!body.contains("\"tags\""), "{what}: {body}");
    }
    // Nothing was purged: the cached manifest is still served with upstream gone.
    up.reset_requests();
    let cached = client
        .get(format!(
            "{}/v2/library/small/manifests/{}",
            berth.url(),
            up.images().small.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 200);
    // (The image's layers may still be arriving from the tag's prefetch.)
    let asked: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/manifests/"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    // A rebound name cannot read either.
    let stats = client
        .get(format!("{admin}/stats"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 421);
    // A tool's request, and one by `localhost`, still work.
    let stats = client
        .get(format!("{}/stats", admin.replace("127.0.0.1", "localhost")))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    let r = client.post(&purge).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[test]
fn an_admin_listener_off_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(
        &path,
        "builtin_upstreams = false\n[admin]\nlisten = \"0.0.0.0:5090\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("BERTH_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("admin.token") && stderr.contains("not on loopback"),
        "{stderr}"
    );
}
