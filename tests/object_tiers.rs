//! `backend = "s3"` beyond the bucket alone, end to end against s3s-fs and
//! the real token-auth registry: a bucket that goes away and comes back
//! (pulls keep getting verified bytes), a bucket that stalls mid-body (the
//! response is cut, not held), the local tier in front of it
//! (sendfile, refilled from the bucket), and `redirect = true` (a
//! presigned 307 that skopeo follows, after the private-content guard).
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bucket;

use berth_cache::SMALL_BLOB;
use berth_testkit::checks::sha256;
use berth_testkit::proc::signal;
use berth_testkit::{Berth, S3Server, TestRegistry};
use bucket::{counter, get_verified, hub_on_s3, pull_small, stored, until_in_tier, until_stored};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn with_the_bucket_down_pulls_get_verified_bytes_from_upstream_and_the_bucket_fills_again_once_back()
 {
    let up = TestRegistry::start().await;
    let mut s3 = S3Server::start();
    let image = up.images().small.clone();
    let big = up.images().big.largest_blob().clone();
    let berth = Berth::start(&hub_on_s3(&up, &s3));
    let dest = tempfile::tempdir().unwrap();
    pull_small(&berth, &image, dest.path(), "cold").await;
    let blobs: Vec<&str> = image.blobs.iter().map(|b| b.digest.as_str()).collect();
    until_stored(&s3, &berth, &blobs).await;

    // The bucket goes away between pulls: its objects, the manifest by
    // digest among them, come from upstream, verified, and a cold blob too.
    s3.stop();
    up.reset_requests();
    pull_small(&berth, &image, dest.path(), "down").await;
    // (Small blobs served before are in memory: no store involved.)
    assert!(image.blobs.iter().any(|b| b.size > SMALL_BLOB));
    for blob in image.blobs.iter().filter(|b| b.size > SMALL_BLOB) {
        assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
    }
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), big.digest);
    let down = reqwest::get(&url).await.unwrap();
    assert_eq!(down.status(), 200);
    assert_eq!(sha256(&down.bytes().await.unwrap()), big.digest);
    assert!(counter(&berth, "berth_cache_read_failures_total").await >= 2);
    assert!(
        berth.logged("cannot read blob from the cache"),
        "{}",
        berth.log()
    );

    // Back: stored objects serve again, and a blob fetched now is stored.
    s3.start_again();
    up.reset_requests();
    pull_small(&berth, &image, dest.path(), "back").await;
    for blob in &image.blobs {
        assert_eq!(up.count("GET", &blob.digest), 0, "{:#?}", up.requests());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !stored(&s3).contains(&big.digest) {
        // Uploads start again once the window after a failed one passed.
        assert!(std::time::Instant::now() < deadline, "{}", berth.log());
        let again = reqwest::get(&url).await.unwrap();
        assert_eq!(sha256(&again.bytes().await.unwrap()), big.digest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_that_stalls_mid_body_cuts_that_response_instead_of_holding_it() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let blob = up.images().big.largest_blob().clone();
    let berth = Berth::start(&hub_on_s3(&up, &s3));
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    assert_eq!(get_verified(&url, &blob.digest).await, "MISS");
    until_stored(&s3, &berth, &[&blob.digest]).await;
    // A warm GET streams from the bucket, which freezes after the first
    // bytes (a process paused, as a hung server).
    let mut r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = r.chunk().await.unwrap().unwrap().len() as u64;
    let pid = s3.pid().unwrap();
    signal(pid, "STOP");
    // Within the bucket's stall limit (30 s) and its retries, well before
    // the server's own stall timeout for any response (120 s).
    let ended = tokio::time::timeout(Duration::from_secs(75), async {
        loop {
            match r.chunk().await {
                Ok(Some(chunk)) => got += chunk.len() as u64,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    signal(pid, "CONT");
    let ended = ended.expect("the response ends once the bucket stalled");
    assert!(ended.is_err(), "cut, not ended early: {got} bytes");
    assert!(got < blob.size, "{got}");
    // Awake again, the bucket serves it whole.
    assert_eq!(get_verified(&url, &blob.digest).await, "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_tier_serves_hot_blobs_with_sendfile_and_refills_from_the_bucket() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let blob = up.images().big.largest_blob().clone();
    let config = format!("{}local_tier_size = \"120MiB\"\n", hub_on_s3(&up, &s3));
    let dir = tempfile::tempdir().unwrap();
    let berth = Berth::start_with_data(&config, &dir.path().join("one"));
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    let sent = "berth_served_zero_copy_bytes_total";

    // A fill goes to the bucket and stays in the tier: warm GETs are
    // sendfile from local disk.
    assert_eq!(get_verified(&url, &blob.digest).await, "MISS");
    until_stored(&s3, &berth, &[&blob.digest]).await;
    until_in_tier(&berth, &blob.digest).await;
    let before = counter(&berth, sent).await;
    assert_eq!(get_verified(&url, &blob.digest).await, "HIT");
    assert!(counter(&berth, sent).await >= before + blob.size);

    // Another berth with an empty tier on the same bucket: served from the
    // bucket (no upstream GET), copied into its tier, then sendfile again.
    let other = Berth::start_with_data(&config, &dir.path().join("two"));
    let url = format!("{}/v2/library/big/blobs/{}", other.url(), blob.digest);
    up.reset_requests();
    assert_eq!(get_verified(&url, &blob.digest).await, "HIT");
    assert_eq!(counter(&other, sent).await, 0);
    until_in_tier(&other, &blob.digest).await;
    assert_eq!(get_verified(&url, &blob.digest).await, "HIT");
    assert!(counter(&other, sent).await >= blob.size);
    assert_eq!(up.count("GET", &blob.digest), 0, "{:#?}", up.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redirect_on_a_stored_blob_is_a_presigned_307_that_skopeo_follows() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let image = up.images().small.clone();
    let config = format!("{}redirect = true\n", hub_on_s3(&up, &s3));
    let berth = Berth::start(&config);
    let dest = tempfile::tempdir().unwrap();
    pull_small(&berth, &image, dest.path(), "cold").await;
    let blobs: Vec<&str> = image.blobs.iter().map(|b| b.digest.as_str()).collect();
    until_stored(&s3, &berth, &blobs).await;

    // A stored layer: a 307 to its object, signed, whose bytes verify.
    let layer = image.largest_blob();
    assert!(layer.size > SMALL_BLOB);
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/v2/library/small/blobs/{}", berth.url(), layer.digest);
    let r = no_follow.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&s3.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(sha256(&direct.bytes().await.unwrap()), layer.digest);

    // Manifests are never redirected.
    let manifest = no_follow
        .get(format!(
            "{}/v2/library/small/manifests/{}",
            berth.url(),
            image.digest
        ))
        .header("accept", &image.media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    // The private-content guard decides first: under a repository upstream
    // does not confirm, no redirect, no bytes.
    let elsewhere = no_follow
        .get(format!(
            "{}/v2/library/nothere/blobs/{}",
            berth.url(),
            layer.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    assert!(elsewhere.headers().get("location").is_none());

    // skopeo follows the redirects; upstream sees no blob GET.
    up.reset_requests();
    pull_small(&berth, &image, dest.path(), "warm").await;
    for blob in &image.blobs {
        assert_eq!(up.count("GET", &blob.digest), 0, "{:#?}", up.requests());
    }
}
