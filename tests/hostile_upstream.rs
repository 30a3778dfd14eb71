//! A hostile or broken upstream against the real binary: credentials in
//! URLs, token realms on other ports, token refresh under load, redirects
//! to other origins, trickled manifests and an upstream that never answers.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::fake_upstream::{Canned, FakeUpstream};
use common::{Berth, upstream_toml};
use std::process::Command;

#[test]
fn credentials_in_an_upstream_url_are_refused_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    let body = upstream_toml(
        "fake.test",
        "http://user:hunter2secret@127.0.0.1:9",
        "default = true\nmirrors = [\"http://127.0.0.1:10\", \"http://me:hunter2secret@127.0.0.1:11\"]",
    );
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\nbuiltin_upstreams = false\n{body}"),
    )
    .unwrap();
    for cmd in ["check-config", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([cmd, "--config"])
            .arg(&path)
            .env_remove("BERTH_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {stdout}{stderr}");
        assert!(
            stderr.contains("upstreams[0].url")
                && stderr.contains("upstreams[0].mirrors[1]")
                && stderr.contains("password_file"),
            "{cmd}: {stderr}"
        );
        assert!(
            !stdout.contains("hunter2") && !stderr.contains("hunter2"),
            "{cmd}: {stdout}{stderr}"
        );
    }
}

/// An upstream that wants `Bearer tok123` from a token realm served by a
/// second fake on the same host but another port.
async fn upstream_with_realm_on_another_port() -> (FakeUpstream, FakeUpstream) {
    let realm = FakeUpstream::start().await;
    realm.route(
        "token",
        Canned {
            body: Bytes::from_static(br#"{"token":"tok123","expires_in":300}"#),
            content_type: "application/json",
            ..Canned::default()
        },
    );
    let up = FakeUpstream::start().await;
    up.require_auth(
        "Bearer tok123",
        &format!("Bearer realm=\"{}/token\",service=\"fake\"", realm.url),
    );
    up.manifest("latest");
    (up, realm)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_realm_on_another_port_of_the_upstream_host_gets_no_credentials() {
    let (up, realm) = upstream_with_realm_on_another_port().await;
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        "default = true\nusername = \"u\"\npassword = \"p\"",
    ));
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        realm.requests(),
        vec!["GET /token?service=fake&scope=repository%3Aproj%2Fapp%3Apull auth=-".to_owned()],
        "the token must be asked for anonymously"
    );

    // Listed with its port, the realm gets the credentials.
    let (up, realm) = upstream_with_realm_on_another_port().await;
    let realm_port = realm.url.rsplit(':').next().unwrap();
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        &format!(
            "default = true\nusername = \"u\"\npassword = \"p\"\nrealm_hosts = [\"127.0.0.1:{realm_port}\"]"
        ),
    ));
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        realm.requests(),
        vec![
            "GET /token?service=fake&scope=repository%3Aproj%2Fapp%3Apull auth=Basic dTpw"
                .to_owned()
        ]
    );
}
