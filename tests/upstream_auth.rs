//! Upstream authentication against a scripted upstream: Basic auth,
//! redirects to a CDN that must not see credentials, and the rule that
//! credentials go only to allowed token realms.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::sha256;
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};
use bytes::Bytes;

const BASIC_U_P: &str = "Basic dTpw"; // base64("u:p")
const MANIFEST: &[u8] = FakeUpstream::MANIFEST;

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_upstream_and_cdn_redirect_without_credentials() {
    let cdn = FakeUpstream::start().await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = sha256(&data);
    cdn.route(
        "cdn/blob",
        Canned {
            body: Bytes::from(data.clone()),
            content_type: "application/octet-stream",
            ..Canned::default()
        },
    );
    let up = FakeUpstream::start().await;
    up.require_auth(BASIC_U_P, "Basic realm=\"fake\"");
    up.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            status: 307,
            headers: vec![("location", format!("{}/cdn/blob?sig=abc", cdn.url))],
            content_type: "text/plain",
            ..Canned::default()
        },
    );
    up.manifest("latest");
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        "default = true\nusername = \"u\"\npassword = \"p\"",
    ));

    let m = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    assert!(m.bytes().await.unwrap() == MANIFEST);
    let b = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    assert_eq!(b.status(), 200);
    let body = b.bytes().await.unwrap();
    assert!(
        body == data,
        "got {} bytes; upstream saw {:?}; cdn saw {:?}",
        body.len(),
        up.requests(),
        cdn.requests()
    );

    let upstream_blob: Vec<String> = up
        .requests()
        .into_iter()
        .filter(|r| r.contains("/blobs/"))
        .collect();
    assert_eq!(
        upstream_blob,
        vec![format!("GET /v2/proj/app/blobs/{digest} auth={BASIC_U_P}")]
    );
    assert_eq!(
        cdn.requests(),
        vec!["GET /cdn/blob?sig=abc auth=-".to_owned()]
    );
}

async fn token_upstream() -> FakeUpstream {
    let up = FakeUpstream::start().await;
    let port = up.url.rsplit(':').next().unwrap().to_owned();
    up.route(
        "token",
        Canned {
            body: Bytes::from_static(br#"{"token":"tok123","expires_in":300}"#),
            content_type: "application/json",
            ..Canned::default()
        },
    );
    up.require_auth(
        "Bearer tok123",
        &format!("Bearer realm=\"http://localhost:{port}/token\",service=\"fake\""),
    );
    up.manifest("latest");
    up.manifest("v2");
    up
}

fn token_requests(up: &FakeUpstream) -> Vec<String> {
    up.requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /token"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_go_only_to_allowed_realms() {
    // The realm (localhost) is not the upstream's host (127.0.0.1): the token is asked for anonymously.
    let up = token_upstream().await;
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        "default = true\nusername = \"u\"\npassword = \"p\"",
    ));
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens = token_requests(&up);
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].ends_with("auth=-"), "{tokens:?}");
    assert!(
        tokens[0].contains("scope=repository%3Aproj%2Fapp%3Apull")
            && tokens[0].contains("service=fake"),
        "{tokens:?}"
    );
    assert!(
        berth
            .log()
            .contains("token realm is not on the upstream's domain")
    );

    // A second manifest reuses the cached token.
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/v2", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(token_requests(&up).len(), 1);

    // Listed in realm_hosts: the credentials are sent.
    let up = token_upstream().await;
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        "default = true\nusername = \"u\"\npassword = \"p\"\nrealm_hosts = [\"localhost\"]",
    ));
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens = token_requests(&up);
    assert!(
        tokens[0].ends_with(&format!("auth={BASIC_U_P}")),
        "{tokens:?}"
    );
}
