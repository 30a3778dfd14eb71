//! What operators read: request and cache counters in `/metrics` (the
//! operational routes and failed pulls included) and the error bodies of
//! upstream answers, against the real upstream.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, Upstream};

/// The value of the sample `name{labels}` in Prometheus text, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_failed_pulls_are_counted() {
    let up = Upstream::start().await;
    let berth = Berth::hub(&up.url(), "");
    for _ in 0..3 {
        let r = reqwest::get(format!("{}/health", berth.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let missing = reqwest::get(format!("{}/v2/library/nothing/manifests/v1", berth.url()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let absent_blob = format!(
        "{}/v2/library/small/blobs/sha256:{}",
        berth.url(),
        "0".repeat(64)
    );
    assert_eq!(reqwest::get(&absent_blob).await.unwrap().status(), 404);
    berth.metrics().await;
    let metrics = berth.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"berth_http_requests_total{route="health",status="200"}"#
        ),
        3.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"berth_http_requests_total{route="metrics",status="200"}"#
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"berth_cache_events_total{kind="manifest",outcome="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"berth_cache_events_total{kind="blob",outcome="failed"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_repositorys_tag_list_says_name_unknown() {
    let up = Upstream::start().await;
    let berth = Berth::hub(&up.url(), "");
    let r = reqwest::get(format!("{}/v2/library/nothing/tags/list", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let error = &body["errors"][0];
    assert_eq!(error["code"], "NAME_UNKNOWN", "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains("UNKNOWN"),
        "upstream's code in the message: {message}"
    );
}
