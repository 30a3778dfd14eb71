//! What the object-storage tests share: a berth in front of the real
//! registry with its blobs in s3s-fs, pulls, and waits on the bucket and
//! the metrics. Each test file uses some of these.
#![allow(dead_code)]

use berth_testkit::checks::{assert_dir_holds, sha256, until};
use berth_testkit::{Berth, S3Server, TestImage, TestRegistry, skopeo_copy_to_dir, upstream_toml};
use std::path::Path;
use std::time::Duration;

/// The bucket keys of the blobs stored, as digests.
pub(crate) fn stored(s3: &S3Server) -> Vec<String> {
    s3.keys()
        .iter()
        .filter_map(|k| k.strip_prefix("blobs/sha256/"))
        .map(|hex| format!("sha256:{hex}"))
        .collect()
}

/// Pull `small:latest` through `berth` with skopeo into `dest/name`, and
/// check it arrived whole.
pub(crate) async fn pull_small(berth: &Berth, image: &TestImage, dest: &Path, name: &str) {
    skopeo_copy_to_dir(
        &format!("{}/library/small:latest", berth.addr),
        &dest.join(name),
    )
    .await
    .unwrap();
    assert_dir_holds(&dest.join(name), image);
}

/// Wait (at most 20 s) until every one of `digests` is an object.
pub(crate) async fn until_stored(s3: &S3Server, berth: &Berth, digests: &[&str]) {
    until(
        Duration::from_secs(20),
        || digests.iter().all(|d| stored(s3).iter().any(|s| s == d)),
        || format!("{:?}\n{}", s3.keys(), berth.log()),
    )
    .await;
}

/// Docker Hub as the real test registry, blobs in `s3`.
pub(crate) fn hub_on_s3(up: &TestRegistry, s3: &S3Server) -> String {
    format!(
        "{}{}",
        upstream_toml(
            "docker.io",
            &up.url(),
            "default = true\nauto_library = true"
        ),
        s3.storage_toml()
    )
}

/// The value of the counter `name` in berth's metrics.
pub(crate) async fn counter(berth: &Berth, name: &str) -> u64 {
    let metrics = berth.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name}: {metrics}"))
        .parse()
        .unwrap()
}

/// GET `url` and check the body hashes to `digest`; the `X-Cache` answer.
pub(crate) async fn get_verified(url: &str, digest: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    let x_cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    x_cache
}

/// Wait (at most 30 s) until `digest` is in `berth`'s local tier.
pub(crate) async fn until_in_tier(berth: &Berth, digest: &str) {
    let tier = berth.data_dir.join("tier");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !berth_testkit::checks::cached(&tier, digest) {
        assert!(std::time::Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
