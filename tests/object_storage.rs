//! `backend = "s3"` end to end: a real S3-compatible server (s3s-fs, which
//! checks signatures) behind berth, in front of the real token-auth
//! registry. Pulls with skopeo, cold and warm and after a restart; 32
//! concurrent cold clients and one upstream GET; corrupt upstream bytes
//! never becoming an object; a bucket that goes away and comes back; and a
//! start that names the key when the bucket or the credentials are wrong.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::SMALL_BLOB;
use berth_testkit::TestImage;
use berth_testkit::berth::serve_until_exit;
use berth_testkit::checks::{assert_dir_holds, pseudo_random, sha256};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, S3Server, TestRegistry, skopeo_copy_to_dir, upstream_toml};
use bytes::Bytes;
use std::path::Path;
use std::time::Duration;

/// The bucket keys of the blobs stored, as digests.
fn stored(s3: &S3Server) -> Vec<String> {
    s3.keys()
        .iter()
        .filter_map(|k| k.strip_prefix("blobs/sha256/"))
        .map(|hex| format!("sha256:{hex}"))
        .collect()
}

/// Pull `small:latest` through `berth` with skopeo into `dest/name`, and
/// check it arrived whole.
async fn pull_small(berth: &Berth, image: &TestImage, dest: &Path, name: &str) {
    skopeo_copy_to_dir(
        &format!("{}/library/small:latest", berth.addr),
        &dest.join(name),
    )
    .await
    .unwrap();
    assert_dir_holds(&dest.join(name), image);
}

/// Wait (at most 20 s) until every one of `digests` is an object.
async fn until_stored(s3: &S3Server, berth: &Berth, digests: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !digests.iter().all(|d| stored(s3).iter().any(|s| s == d)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}\n{}",
            s3.keys(),
            berth.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hub_on_s3(up: &TestRegistry, s3: &S3Server) -> String {
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

#[tokio::test(flavor = "multi_thread")]
async fn pulls_fill_the_bucket_and_a_restarted_berth_serves_them_from_it() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let image = up.images().small.clone();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = hub_on_s3(&up, &s3);
    let mut berth = Berth::start_with_data(&config, &data);
    let dest = tempfile::tempdir().unwrap();
    pull_small(&berth, &image, dest.path(), "cold").await;
    // Each blob becomes an object once verified; nothing lands on local disk.
    let blobs: Vec<&str> = image.blobs.iter().map(|b| b.digest.as_str()).collect();
    until_stored(&s3, &berth, &blobs).await;
    assert!(
        stored(&s3).contains(&image.digest),
        "the manifest: {:?}",
        s3.keys()
    );
    assert!(!berth_testkit::checks::cached(
        &berth.data_dir,
        &image.blobs[0].digest
    ));

    // A new berth on the same data dir and bucket: no upstream blob GET.
    assert!(berth.terminate(Duration::from_secs(10)).is_some());
    let again = Berth::start_with_data(&config, &data);
    up.reset_requests();
    pull_small(&again, &image, dest.path(), "warm").await;
    for blob in &image.blobs {
        assert_eq!(up.count("GET", &blob.digest), 0, "{:#?}", up.requests());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_cold_clients_cause_one_upstream_get_and_one_object() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let blob = up.images().big.largest_blob().clone();
    let berth = Berth::start(&hub_on_s3(&up, &s3));
    up.set_throttle(Some(Duration::from_micros(200)));
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = reqwest::get(url).await.unwrap();
                assert_eq!(r.status(), 200);
                sha256(&r.bytes().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), blob.digest);
    }
    up.set_throttle(None);
    assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
    until_stored(&s3, &berth, &[&blob.digest]).await;
    // Served from the bucket now, any range.
    let ranged = reqwest::Client::new()
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["x-cache"], "HIT");
    let full = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&full), blob.digest);
    assert_eq!(ranged.bytes().await.unwrap(), full.slice(1000..2000));
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_upstream_bytes_never_become_an_object() {
    let fake = FakeUpstream::start().await;
    let s3 = S3Server::start();
    let good = pseudo_random(3 << 20, 7);
    let digest = sha256(&good);
    let mut bad = good.clone();
    bad[12345] ^= 0xff;
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(bad),
            content_type: "application/octet-stream",
            ..Canned::default()
        },
    );
    let berth = Berth::start(&format!(
        "{}{}",
        upstream_toml("fake.test", &fake.url, "default = true"),
        s3.storage_toml()
    ));
    let r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    let body = r.bytes().await;
    assert!(
        body.is_err() || body.unwrap().len() < good.len(),
        "a whole bad body was delivered"
    );
    assert!(berth.logged("blob download failed"), "{}", berth.log());
    assert!(!stored(&s3).contains(&digest), "{:?}", s3.keys());
}

/// The value of the counter `name` in berth's metrics.
async fn counter(berth: &Berth, name: &str) -> u64 {
    let metrics = berth.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name}: {metrics}"))
        .parse()
        .unwrap()
}

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

/// GET `url` and check the body hashes to `digest`; the `X-Cache` answer.
async fn get_verified(url: &str, digest: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    let x_cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    x_cache
}

/// Wait (at most 30 s) until `digest` is in `berth`'s local tier.
async fn until_in_tier(berth: &Berth, digest: &str) {
    let tier = berth.data_dir.join("tier");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !berth_testkit::checks::cached(&tier, digest) {
        assert!(std::time::Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

#[test]
fn a_missing_bucket_or_wrong_credentials_stop_the_start_naming_the_key() {
    let s3 = S3Server::start();
    let upstream = upstream_toml("fake.test", "http://127.0.0.1:9", "default = true");
    let cases = [
        (
            s3.storage_toml().replace(
                &format!("bucket = \"{}\"", s3.bucket),
                "bucket = \"no-such-bucket\"",
            ),
            "storage.bucket",
        ),
        (
            s3.storage_toml().replace(&s3.secret_key, "a-wrong-secret"),
            "storage.access_key_id / storage.secret_access_key",
        ),
    ];
    for (storage, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (status, stderr) = serve_until_exit(
            &format!("{upstream}{storage}"),
            &dir.path().join("data"),
            Duration::from_secs(30),
        )
        .expect("berth must not start");
        assert!(!status.success());
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}

#[test]
fn check_config_probe_tries_the_bucket_without_serving() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let probe = |storage: &str| {
        let path = dir.path().join("berth.toml");
        let upstream = upstream_toml("fake.test", "http://127.0.0.1:9", "default = true");
        std::fs::write(
            &path,
            format!(
                "data_dir = \"{}\"\n{upstream}{storage}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(berth_testkit::berth_binary())
            .args(["check-config", "--probe", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = probe(&s3.storage_toml());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("probe: bucket berth-test answers"), "{text}");
    let (code, text) = probe(&s3.storage_toml().replace(&s3.secret_key, "a-wrong-secret"));
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("storage.access_key_id / storage.secret_access_key"),
        "{text}"
    );
    // Nothing was served or written: the data dir was never made.
    assert!(!dir.path().join("data").exists());
}
