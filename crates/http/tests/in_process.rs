//! The fast tier: the router and the pull engine in this process, over an
//! in-memory store, against a fault-serving fake upstream on 127.0.0.1. No
//! binary is spawned. Store faults are injected through the store traits
//! (a disk that fills at byte N, an index that is down), and the disk-bypass
//! window is crossed by advancing tokio's clock rather than by sleeping.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod faults;
mod mirror;

use axum::Router;
use axum::body::Body;
use berth_cache::{BlobStore, IndexStore, MemoryIndex, MemoryStore};
use berth_pull::Surroundings;
use berth_testkit::checks::pseudo_random;
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use bytes::Bytes;
use faults::{FaultyIndex, FaultyStore};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

/// A mirror of `fake` (as the default upstream) over the given stores.
fn mirror(fake: &FakeUpstream, blobs: Arc<dyn BlobStore>, index: Arc<dyn IndexStore>) -> Router {
    mirror::mirror(fake, "", blobs, index, Surroundings::default())
}

/// What a client sees: status, headers, and the body or why it broke off.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Result<Bytes, String>,
}

async fn get(mirror: &Router, path: &str, range: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = mirror
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Serve a blob of `size` pseudo-random bytes at `proj/app`, in pieces.
fn blob(fake: &FakeUpstream, size: u32, seed: u32) -> (String, Vec<u8>) {
    let data = pseudo_random(size, seed);
    let canned = Canned {
        chunked: true,
        pieces: 16,
        ..Canned::default()
    };
    (fake.blob(&data, canned), data)
}

fn x_cache(answer: &Answer) -> &str {
    answer.headers["x-cache"].to_str().unwrap()
}

#[tokio::test]
async fn a_cold_blob_is_fetched_once_then_served_and_ranged_from_the_store() {
    let fake = FakeUpstream::start().await;
    let (digest, data) = blob(&fake, 300 << 10, 1);
    let store = Arc::new(MemoryStore::new(64 << 20));
    let mirror = mirror(&fake, store.clone(), Arc::new(MemoryIndex::default()));
    let path = format!("/v2/proj/app/blobs/{digest}");

    let cold = get(&mirror, &path, None).await;
    assert_eq!(cold.status, StatusCode::OK);
    assert_eq!(x_cache(&cold), "MISS");
    assert_eq!(cold.body.unwrap(), data);
    let warm = get(&mirror, &path, None).await;
    assert_eq!(x_cache(&warm), "HIT");
    assert_eq!(warm.body.unwrap(), data);
    let ranged = get(&mirror, &path, Some("bytes=1000-1999")).await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body.unwrap(), &data[1000..2000]);

    assert_eq!(fake.count(&format!("GET /v2/proj/app/blobs/{digest}")), 1);
    assert_eq!(store.digests().len(), 1);
    assert_eq!(store.digests()[0].to_string(), digest);
}

#[tokio::test]
async fn a_disk_that_fills_at_byte_n_costs_one_response_then_is_bypassed_then_tried_again() {
    let fake = FakeUpstream::start().await;
    let (digest, data) = blob(&fake, 1 << 20, 2);
    let store = Arc::new(FaultyStore::new(64 << 20));
    store.fill_at(300 << 10);
    let mirror = mirror(&fake, store.clone(), Arc::new(MemoryIndex::default()));
    let path = format!("/v2/proj/app/blobs/{digest}");

    // The write fails part-way: the response it fed is cut off, never
    // completed with wrong or missing bytes, and nothing is stored.
    let first = get(&mirror, &path, None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.is_err(), "the failed fill's response must break");
    assert!(store.is_empty());

    // Within the bypass window, downloads stream uncached and verified.
    let bypassed = get(&mirror, &path, None).await;
    assert_eq!(bypassed.body.unwrap(), data);
    assert!(store.is_empty());

    // The disk has room again, but the window is still open.
    store.fill_at(u64::MAX);
    assert_eq!(get(&mirror, &path, None).await.body.unwrap(), data);
    assert!(store.is_empty());
    let metrics = get(&mirror, "/metrics", None).await.body.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(r#"berth_cache_events_total{kind="blob",outcome="direct"} 2"#),
        "{metrics}"
    );

    // Once the window has passed, the next download is cached again.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(6)).await;
    tokio::time::resume();
    let cached = get(&mirror, &path, None).await;
    assert_eq!(x_cache(&cached), "MISS");
    assert_eq!(cached.body.unwrap(), data);
    assert!(!store.is_empty());
    assert_eq!(x_cache(&get(&mirror, &path, None).await), "HIT");
}

#[tokio::test]
async fn a_store_that_cannot_be_read_costs_no_client_its_bytes_and_serves_again_once_back() {
    let fake = FakeUpstream::start().await;
    let (stored, stored_data) = blob(&fake, 300 << 10, 3);
    let cold_data = pseudo_random(200 << 10, 4);
    let cold = fake.blob(&cold_data, Canned::default());
    fake.manifest("v1");
    let store = Arc::new(FaultyStore::new(64 << 20));
    let mirror = mirror(&fake, store.clone(), Arc::new(MemoryIndex::default()));
    let stored_path = format!("/v2/proj/app/blobs/{stored}");
    let cold_path = format!("/v2/proj/app/blobs/{cold}");
    assert_eq!(
        get(&mirror, &stored_path, None).await.body.unwrap(),
        stored_data
    );
    let manifest = get(&mirror, "/v2/proj/app/manifests/v1", None).await;
    let manifest_digest = manifest.headers["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(store.len(), 2, "the blob and the manifest are stored");

    store.go_down();
    // A stored blob, a cold one, a HEAD and a manifest by digest: each
    // comes from upstream, verified, rather than failing.
    let down = get(&mirror, &stored_path, None).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(down.body.unwrap(), stored_data);
    assert_eq!(
        get(&mirror, &cold_path, None).await.body.unwrap(),
        cold_data
    );
    let head = mirror
        .clone()
        .oneshot(Request::head(&cold_path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        cold_data.len().to_string().as_str()
    );
    assert_eq!(fake.count(&format!("HEAD /v2/proj/app/blobs/{cold}")), 1);
    let by_digest = get(
        &mirror,
        &format!("/v2/proj/app/manifests/{manifest_digest}"),
        None,
    )
    .await;
    assert_eq!(by_digest.status, StatusCode::OK);
    assert_eq!(by_digest.body.unwrap(), FakeUpstream::MANIFEST);
    assert_eq!(fake.count(&format!("GET /v2/proj/app/blobs/{stored}")), 2);
    assert_eq!(fake.count(&format!("GET /v2/proj/app/blobs/{cold}")), 1);
    assert_eq!(
        store.len(),
        2,
        "nothing was stored while the store was down"
    );
    let metrics = get(&mirror, "/metrics", None).await.body.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_cache_read_failures_total "))
        .expect("the read failures are counted");
    assert!(failures.parse::<u64>().unwrap() >= 3, "{failures}");

    // Back: what was stored before serves again without going upstream.
    store.come_back();
    let back = get(&mirror, &stored_path, None).await;
    assert_eq!(x_cache(&back), "HIT");
    assert_eq!(back.body.unwrap(), stored_data);
    assert_eq!(fake.count(&format!("GET /v2/proj/app/blobs/{stored}")), 2);
}

#[tokio::test]
async fn an_index_outage_is_an_error_not_a_miss() {
    let fake = FakeUpstream::start().await;
    fake.manifest("v1");
    let index = Arc::new(FaultyIndex::default());
    let mirror = mirror(&fake, Arc::new(MemoryStore::new(1 << 20)), index.clone());

    let warm = get(&mirror, "/v2/proj/app/manifests/v1", None).await;
    assert_eq!(warm.status, StatusCode::OK);
    assert_eq!(warm.body.unwrap(), FakeUpstream::MANIFEST);
    let asked = fake.count("/manifests/v1");

    index.go_down();
    let down = get(&mirror, "/v2/proj/app/manifests/v1", None).await;
    assert_eq!(down.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = serde_json::from_slice(&down.body.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNKNOWN");
    assert_eq!(
        fake.count("/manifests/v1"),
        asked,
        "an outage went upstream as a miss"
    );
}
