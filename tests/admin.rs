//! The admin surface against the real upstream: the admin endpoints are off
//! unless configured; an admin listener takes `/metrics` and the endpoints
//! off the public port; a token guards them; purge and gc change the store
//! of the serving berth, memory included.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::{cached, eventually_cached};
use berth_testkit::{Berth, Skopeo, TestRegistry};

const TOKEN: &str = "an-admin-token-of-some-length";

async fn post(url: &str, token: Option<&str>) -> (u16, String, Option<String>) {
    let mut request = reqwest::Client::new().post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), challenge)
}

async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_are_off_unless_configured() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    let (status, body, _) = post(
        &format!("{}/admin/cache/purge?pattern=docker.io/**", berth.url()),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = post(&format!("{}/admin/cache/gc", berth.url()), None).await;
    assert_eq!(status, 404);
    // Metrics stay on the public port, as before.
    assert_eq!(status_of(&format!("{}/metrics", berth.url())).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_purges_with_its_token_and_keeps_metrics_off_the_public_port() {
    let mut up = TestRegistry::start().await;
    let images = up.images();
    let small = images.small.clone();
    let berth = Berth::hub(
        &up.url(),
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = {TOKEN:?}\n"),
    );
    let admin = berth.admin_url().await;
    let dest = tempfile::tempdir().unwrap();
    Skopeo::new()
        .mirror(&berth.addr)
        .copy_to_dir("docker.io/library/small:latest", &dest.path().join("i"))
        .await
        .unwrap();
    for blob in &small.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
    }
    let manifest = format!("{}/v2/library/small/manifests/latest", berth.url());
    assert_eq!(status_of(&manifest).await, 200);

    // Metrics and health move to the admin listener; the public port keeps
    // health and has no admin endpoints.
    assert_eq!(status_of(&format!("{}/metrics", berth.url())).await, 404);
    assert_eq!(status_of(&format!("{admin}/metrics")).await, 200);
    assert_eq!(status_of(&format!("{admin}/health")).await, 200);
    assert_eq!(status_of(&format!("{}/health", berth.url())).await, 200);
    // `small` is the repository a pull of `small` reaches.
    let purge = format!("{admin}/admin/cache/purge?pattern=small");
    let public_purge = purge.replace(&admin, &berth.url());
    assert_eq!(post(&public_purge, Some(TOKEN)).await.0, 404);

    // Without the token, or with a wrong one: 401, a challenge, nothing
    // removed.
    for token in [None, Some("an-admin-token-of-some-lengtH")] {
        let (status, body, challenge) = post(&purge, token).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("\"UNAUTHORIZED\""), "{body}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"berth admin\""));
    }
    assert!(
        small
            .blobs
            .iter()
            .all(|b| cached(&berth.data_dir, &b.digest))
    );

    // A bad pattern is refused with the reason.
    let (status, body, _) = post(
        &format!("{admin}/admin/cache/purge?pattern=no//pe"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = error["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("\"no//pe\" is not a pattern"), "{body}");

    let (status, body, _) = post(&purge, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["pattern"], "docker.io/library/small", "{body}");
    assert_eq!(report["tags"], 1, "{body}");
    assert_eq!(report["blobs"], 1 + small.blobs.len(), "{body}");
    assert!(report["bytes"].as_u64().unwrap() > 0, "{body}");
    assert!(
        small
            .blobs
            .iter()
            .all(|b| !cached(&berth.data_dir, &b.digest))
    );
    assert!(!cached(&berth.data_dir, &small.digest));

    // Gone from memory too: with upstream down the manifest is not served.
    up.stop();
    assert!(status_of(&manifest).await >= 500);

    let (status, body, _) = post(&format!("{admin}/admin/cache/gc"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        report["tags"].is_u64() && report["manifest_types"].is_u64(),
        "{body}"
    );
    let (status, _, _) = post(&format!("{admin}/admin/cache/gc"), None).await;
    assert_eq!(status, 401);
    assert_eq!(status_of(&format!("{admin}/v2/")).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_alone_puts_the_admin_endpoints_on_the_public_port() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), &format!("[admin]\ntoken = {TOKEN:?}\n"));
    let gc = format!("{}/admin/cache/gc", berth.url());
    assert_eq!(post(&gc, None).await.0, 401);
    let (status, body, _) = post(&gc, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"manifest_types":0,"tags":0}"#);
    assert_eq!(status_of(&format!("{}/metrics", berth.url())).await, 200);
}
