//! One upstream fetch per blob, whatever the number of clients: concurrent
//! readers share the download as it fills, the first byte arrives before
//! the blob is complete, and the download survives clients that leave or
//! stall.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::{assert_range, cached, sample, sha256};
use berth_testkit::{Berth, TestRegistry};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// Fetch the manifest first so berth holds a token for the repository and
/// the blob GET below is the only blob request upstream sees.
async fn warm_token(berth: &Berth) {
    let r = reqwest::get(format!("{}/v2/library/big/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_pull_after_a_start_asks_with_a_token() {
    let up = TestRegistry::start().await;
    let blob = up.images().big.largest_blob().clone();
    let berth = Berth::hub(&up.url(), "");
    // berth learns the upstream's challenge in the background at start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !berth.log().contains("upstream challenge learned") {
        assert!(Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up.reset_requests();
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = reqwest::get(url).await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap().len() as u64
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), blob.size);
    }
    let requests = up.requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status == 401).collect();
    assert!(refused.is_empty(), "{refused:#?}");
    assert_eq!(up.count("GET", &blob.digest), 1, "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_cold_gets_make_one_upstream_get() {
    let up = TestRegistry::start().await;
    let blob = up.images().big.largest_blob().clone();
    assert!(blob.size >= 48 << 20);
    let berth = Berth::hub(&up.url(), "");
    warm_token(&berth).await;
    up.set_throttle(Some(Duration::from_micros(200)));
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let declared = response.content_length();
                let mut hasher = berth_oci::DigestHasher::new();
                let mut len = 0u64;
                let mut body = response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.unwrap();
                    len += chunk.len() as u64;
                    hasher.update(&chunk);
                }
                (declared, len, hasher.finish().to_string())
            })
        })
        .collect();
    for task in tasks {
        let (declared, len, digest) = task.await.unwrap();
        assert_eq!(declared, Some(blob.size));
        assert_eq!(len, blob.size);
        assert_eq!(digest, blob.digest);
    }
    assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
    // Every client joined the one download (started by berth's eager
    // prefetch of the manifest's layers, or by the first of them), or,
    // once it was done, read the cache.
    let metrics = berth.metrics().await;
    let blob_events = |outcome: &str| {
        sample(
            &metrics,
            &format!(r#"berth_cache_events_total{{kind="blob",outcome="{outcome}"}}"#),
        )
    };
    assert!(blob_events("miss") <= 1.0, "{metrics}");
    assert!(blob_events("coalesced") >= 1.0, "{metrics}");
    assert_eq!(
        blob_events("miss") + blob_events("coalesced") + blob_events("hit") + blob_events("ahead"),
        32.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn download_streams_early_and_survives_clients_that_leave_or_stall() {
    let up = TestRegistry::start().await;
    let blob = up.images().big.largest_blob().clone();
    let expected = up.images().read_blob(&blob.digest);
    let berth = Berth::hub(&up.url(), "");
    warm_token(&berth).await;
    up.set_throttle(Some(Duration::from_micros(500)));
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    let client = reqwest::Client::new();

    // The first client gets bytes while the blob is still being fetched...
    let mut first = client.get(&url).send().await.unwrap();
    let chunk = first.chunk().await.unwrap().unwrap();
    assert!(!chunk.is_empty());
    assert_eq!(&chunk[..], &expected[..chunk.len()]);
    assert!(
        !cached(&berth.data_dir, &blob.digest),
        "first byte must not wait for the whole blob"
    );
    // ...then goes away.
    drop(first);

    // A range request on the blob still being fetched.
    assert_range(&client, &url, (1000, 1999), &expected).await;

    // A second client reads one chunk and stalls.
    let mut stalled = client.get(&url).send().await.unwrap();
    let mut received = stalled.chunk().await.unwrap().unwrap().to_vec();

    // The download completes anyway.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cached(&berth.data_dir, &blob.digest) {
        assert!(
            Instant::now() < deadline,
            "fill did not complete:\n{}",
            berth.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while let Some(c) = stalled.chunk().await.unwrap() {
        received.extend_from_slice(&c);
    }
    assert_eq!(received.len() as u64, blob.size);
    assert_eq!(sha256(&received), blob.digest);
    assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
}
