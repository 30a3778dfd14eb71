//! The cache's lifecycle and maintenance on `backend = "s3"`, end to end
//! against s3s-fs and the real token-auth registry: `max_size` deletes
//! the least recently used objects and keeps pinned repositories; `berth
//! cache du` reads the bucket; `purge` deletes a repository's objects.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bucket;

use berth_testkit::checks::until;
use berth_testkit::{Berth, S3Server, TestRegistry};
use bucket::{get_verified, hub_on_s3, pull_small, stored, until_stored};
use std::process::{Command, Output};
use std::time::Duration;

fn cache(berth: &Berth, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("cache")
        .args(args)
        .arg("--config")
        .arg(berth.config_path())
        .output()
        .unwrap()
}

/// Wait (at most 30 s) until none of `digests` is an object.
async fn until_deleted(s3: &S3Server, berth: &Berth, digests: &[&str]) {
    until(
        Duration::from_secs(30),
        || !stored(s3).iter().any(|s| digests.contains(&s.as_str())),
        || format!("{:?}\n{}", s3.keys(), berth.log()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_size_deletes_objects_but_pinned_ones_and_du_and_purge_work_on_the_bucket() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let small = up.images().small.clone();
    let big = up.images().big.largest_blob().clone();
    // Room for the big layer, not for it and the small image too.
    let cap = big.size + (256 << 10);
    let config = format!(
        "{}\n[cache]\nmax_size = {cap}\npin = [\"docker.io/library/small\"]\n",
        hub_on_s3(&up, &s3)
    );
    let berth = Berth::start(&config);
    let dest = tempfile::tempdir().unwrap();
    pull_small(&berth, &small, dest.path(), "small").await;
    let mut kept: Vec<&str> = small.blobs.iter().map(|b| b.digest.as_str()).collect();
    kept.push(&small.digest);
    until_stored(&s3, &berth, &kept).await;

    // The big layer's commit takes the bucket past max_size: a pass
    // deletes what is not pinned, and the pinned image stays whole.
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), big.digest);
    assert_eq!(get_verified(&url, &big.digest).await, "MISS");
    until_deleted(&s3, &berth, &[&big.digest]).await;
    until(
        Duration::from_secs(10),
        || berth.logged("evicted least recently used blobs"),
        || berth.log(),
    )
    .await;
    let left = stored(&s3);
    for digest in &kept {
        assert!(left.iter().any(|s| s == digest), "{digest}: {left:?}");
    }

    // `cache du` reads the bucket.
    let du = cache(&berth, &["du"]);
    let text = String::from_utf8_lossy(&du.stdout);
    assert!(
        du.status.success(),
        "{}",
        String::from_utf8_lossy(&du.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.ends_with(" docker.io/library/small"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(" 4 "), "{line}");

    // `cache purge` (done by the serving berth) deletes the objects.
    let purge = cache(&berth, &["purge", "small"]);
    assert!(
        purge.status.success(),
        "{}",
        String::from_utf8_lossy(&purge.stderr)
    );
    until_deleted(&s3, &berth, &kept).await;
}
