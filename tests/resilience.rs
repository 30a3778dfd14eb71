//! Resilience against a failing upstream: retries, failover across mirrors
//! with circuit breakers, resumed downloads, remembered misses, timeouts,
//! the concurrency cap, and stale answers when the token service is down.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit as testkit;

use berth_testkit::checks::{oci_error, pseudo_random, sha256};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, TestRegistry, skopeo_copy_to_dir, upstream_toml};
use bytes::Bytes;
use std::time::Duration;

const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

async fn get_manifest(berth: &Berth, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/v2/{path}", berth.url()))
        .header("accept", DOCKER_V2)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_over_to_a_healthy_mirror_and_opens_the_breaker() {
    let up = TestRegistry::start().await;
    let broken = FakeUpstream::start().await;
    broken.set_status_all(Some(503));
    let berth = Berth::start(&upstream_toml(
        "docker.io",
        &broken.url,
        &format!(
            // Counted requests are the client's own: no prefetches.
            "default = true\nauto_library = true\neager_layers = false\nmirrors = [{:?}]",
            up.url()
        ),
    ));
    for tag in ["latest", "v1"] {
        let dest = tempfile::tempdir().unwrap();
        skopeo_copy_to_dir(&format!("{}/library/small:{tag}", berth.addr), dest.path())
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}\n{:?}", berth.log(), broken.requests()));
    }
    // Three failures open the breaker; after that the broken mirror is skipped.
    let failed = broken.requests_beyond_ping().len();
    assert!((1..=3).contains(&failed), "{:?}", broken.requests());
    let r = get_manifest(&berth, "library/big/manifests/latest").await;
    assert_eq!(r.status(), 200);
    assert_eq!(broken.requests_beyond_ping().len(), failed);
    let metrics = berth.metrics().await;
    let open = format!(
        "berth_upstream_mirror_state{{upstream=\"docker.io\",mirror=\"{}\"}} 1",
        broken.url
    );
    assert!(metrics.contains(&open), "{metrics}");
    assert!(berth.log().contains("circuit opened"));
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_5xx_is_retried_and_404_is_not() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "eager_layers = false");
    assert_eq!(
        get_manifest(&berth, "small/manifests/v1").await.status(),
        200
    );
    up.reset_requests();
    up.fail_next(2, 503);
    let r = get_manifest(&berth, "small/manifests/latest").await;
    assert_eq!(r.status(), 200);
    let statuses: Vec<u16> = up.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);

    up.reset_requests();
    for _ in 0..3 {
        let r = get_manifest(&berth, "small/manifests/nope").await;
        assert_eq!(r.status(), 404);
        assert_eq!(oci_error(r).await.0, "MANIFEST_UNKNOWN");
    }
    let asked: Vec<u16> = up.requests().iter().map(|r| r.status).collect();
    assert_eq!(asked, vec![404], "a miss is asked once and remembered");
    assert!(berth.metrics().await.contains(r#"outcome="negative""#));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_blob_download_resumes_with_a_range_request() {
    let fake = FakeUpstream::start().await;
    let data = pseudo_random(3_000_000, 0);
    let digest = sha256(&data);
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(data.clone()),
            content_type: "application/octet-stream",
            break_after: 1 << 20,
            breaks: 1,
            ..Canned::default()
        },
    );
    let berth = Berth::start(&upstream_toml("fake.test", &fake.url, "default = true"));
    let response = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256(&body), digest);
    let gets: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.contains("/blobs/"))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(
        gets[1].ends_with(&format!("range=bytes={}-", 1 << 20)),
        "{gets:?}"
    );
    assert!(
        berth
            .metrics()
            .await
            .contains(r#"berth_upstream_resumes_total{upstream="fake.test"} 1"#)
    );
    assert!(testkit::checks::eventually_cached(&berth.data_dir, &digest).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_time_out_as_504() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "header_timeout = \"500ms\"\nretries = 0");
    up.set_delay(Some(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let r = get_manifest(&berth, "small/manifests/latest").await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(oci_error(r).await.0, "UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_concurrency_cap_queues_then_refuses() {
    let fake = FakeUpstream::start().await;
    let data = vec![7u8; 1 << 20];
    let digest = sha256(&data);
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(data),
            content_type: "application/octet-stream",
            pieces: 10,
            pause: Duration::from_millis(200),
            ..Canned::default()
        },
    );
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nmax_concurrent = 1\nqueue_timeout = \"300ms\"",
    ));
    let slow = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let (code, message) = oci_error(r).await;
    assert_eq!(code, "UNAVAILABLE");
    assert!(message.contains("too many requests"), "{message}");
    assert_eq!(sha256(&slow.bytes().await.unwrap()), digest);
    assert_eq!(fake.count("/manifests/"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_service_down_serves_cached_tags_stale() {
    let up = TestRegistry::start().await;
    up.issuer().set_expires_in(Duration::from_secs(6));
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "tag_ttl = \"1h\"\nretries = 1");
    assert_eq!(
        get_manifest(&berth, "small/manifests/latest")
            .await
            .status(),
        200
    );
    up.issuer().set_down(true);
    berth.reconfigure("tag_ttl = \"1h\"", "tag_ttl = \"0s\"");
    let r = get_manifest(&berth, "small/manifests/latest").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("warning"));
    assert_eq!(r.headers()["docker-content-digest"], small.digest.as_str());
    assert!(up.issuer().token_log().iter().any(|t| t.status == 503));
    // Uncached content fails with a 5xx, not a 404.
    let r = get_manifest(&berth, "big/manifests/latest").await;
    assert!(r.status().is_server_error(), "{}", r.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_retried_after_the_asked_delay() {
    let fake = FakeUpstream::start().await;
    fake.manifest("latest");
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nretries = 2",
    ));
    fake.set_status_all(Some(429));
    let limited = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(oci_error(limited).await.0, "TOOMANYREQUESTS");
    assert_eq!(
        fake.count("/manifests/latest"),
        3,
        "one try and two retries"
    );
    fake.set_status_all(None);
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_times_out_and_resumes() {
    let fake = FakeUpstream::start().await;
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i >> 5) as u8).collect();
    let digest = sha256(&data);
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(data.clone()),
            content_type: "application/octet-stream",
            pieces: 2,
            pause: Duration::from_secs(3),
            ..Canned::default()
        },
    );
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nidle_timeout = \"1s\"",
    ));
    // The first piece arrives after 3 s of silence: the idle timeout breaks
    // each attempt, and no attempt completes within the retries.
    let r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    let outcome = r.bytes().await;
    assert!(outcome.is_err() || outcome.unwrap().len() < data.len());
    assert!(
        berth.log().contains("timed out") || berth.log().contains("broke off"),
        "{}",
        berth.log()
    );
    assert!(!testkit::checks::cached(&berth.data_dir, &digest));
}
