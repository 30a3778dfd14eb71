//! `backend = "s3"` end to end: a real S3-compatible server (s3s-fs, which
//! checks signatures) behind berth, in front of the real token-auth
//! registry. Pulls with skopeo, cold and warm and after a restart, and
//! with containerd cold and warm; 32
//! concurrent cold clients and one upstream GET; corrupt upstream bytes
//! never becoming an object; and a start that names the key when the
//! bucket or the credentials are wrong.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bucket;

use berth_testkit::berth::serve_until_exit;
use berth_testkit::checks::{pseudo_random, sha256};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, Containerd, S3Server, TestRegistry, upstream_toml, write_hosts_toml};
use bucket::{hub_on_s3, pull_small, stored, until_stored};
use bytes::Bytes;
use std::time::Duration;

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
    // Stored in parts, every part's upload completed.
    assert!(blob.size > berth_cache::ONE_PUT);
    assert_eq!(s3.open_uploads(), Vec::<String>::new());
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

/// Serve `data` as blob `digest` of `proj/app`, in `pieces` with `pause`
/// between them (none: at once).
fn route_blob(fake: &FakeUpstream, digest: &str, data: Vec<u8>, pieces: usize, pause: Duration) {
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(data),
            content_type: "application/octet-stream",
            pieces,
            pause,
            ..Canned::default()
        },
    );
}

/// A berth on `s3` in front of `fake` as the default upstream.
fn fake_on_s3(fake: &FakeUpstream, s3: &S3Server) -> Berth {
    Berth::start(&format!(
        "{}{}",
        upstream_toml("fake.test", &fake.url, "default = true"),
        s3.storage_toml()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_upstream_bytes_never_become_an_object() {
    let fake = FakeUpstream::start().await;
    let s3 = S3Server::start();
    // One PUT, and (above 16 MiB) parts streamed during the download.
    let mut digests = Vec::new();
    for (size, seed) in [(3u32 << 20, 7), (40 << 20, 8)] {
        let good = pseudo_random(size, seed);
        let digest = sha256(&good);
        let mut bad = good;
        bad[12345] ^= 0xff;
        route_blob(&fake, &digest, bad, 0, Duration::ZERO);
        digests.push((digest, size as usize));
    }
    let berth = fake_on_s3(&fake, &s3);
    for (digest, size) in &digests {
        let r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
            .await
            .unwrap();
        let body = r.bytes().await;
        assert!(
            body.is_err() || body.unwrap().len() < *size,
            "a whole bad body was delivered"
        );
    }
    assert!(berth.logged("blob download failed"), "{}", berth.log());
    // The streamed upload is aborted: no part is left, nothing is visible.
    s3.until_no_upload_open().await;
    for (digest, _) in &digests {
        assert!(!stored(&s3).contains(digest), "{:?}", s3.keys());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_fill_streams_its_parts_while_downloading_and_completes_once_verified() {
    let fake = FakeUpstream::start().await;
    let s3 = S3Server::start();
    let data = pseudo_random(40 << 20, 12);
    let digest = sha256(&data);
    route_blob(&fake, &digest, data, 80, Duration::from_millis(25));
    let berth = fake_on_s3(&fake, &s3);
    let url = format!("{}/v2/proj/app/blobs/{digest}", berth.url());
    let client = tokio::spawn(async move { reqwest::get(url).await.unwrap().bytes().await });
    // While the download goes on: parts on the server, no object.
    let key = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !s3.open_uploads().iter().any(|f| f.contains(".part-")) {
        assert!(std::time::Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !client.is_finished(),
        "the download ended before a part went up"
    );
    assert!(s3.object(&key).is_none(), "visible before it was verified");
    assert_eq!(sha256(&client.await.unwrap().unwrap()), digest);
    until_stored(&s3, &berth, &[&digest]).await;
    assert_eq!(sha256(&s3.object(&key).unwrap()), digest);
    s3.until_no_upload_open().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_pulls_cold_then_warm_from_the_bucket() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let multi = up.images().multi.clone();
    let berth = Berth::start(&format!(
        "{}{}",
        upstream_toml("docker.io", &up.url(), "auto_library = true"),
        s3.storage_toml()
    ));
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "docker.io", &berth.url(), false);
    let amd64 = multi
        .children
        .iter()
        .find(|c| c.platform == "linux/amd64")
        .unwrap();
    let blobs: Vec<&str> = amd64.blobs.iter().map(|b| b.digest.as_str()).collect();
    // Each round a containerd with an empty content store of its own.
    for round in ["cold", "warm"] {
        let containerd = Containerd::start().await;
        let digest = containerd
            .ctr_pull("docker.io/library/multi:latest", hosts.path())
            .await
            .unwrap_or_else(|e| panic!("{round}: {e}\nberth log:\n{}", berth.log()));
        assert_eq!(digest, multi.digest, "{round}");
        until_stored(&s3, &berth, &blobs).await;
    }
    for blob in &blobs {
        assert_eq!(up.count("GET", blob), 1, "{blob}: {:#?}", up.requests());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_an_upload_leaves_no_partial_object_and_a_restart_stores_it_whole() {
    let fake = FakeUpstream::start().await;
    let s3 = S3Server::start();
    let data = pseudo_random(64 << 20, 11);
    let digest = sha256(&data);
    route_blob(&fake, &digest, data, 0, Duration::ZERO);
    let config = format!(
        "{}{}",
        upstream_toml("fake.test", &fake.url, "default = true"),
        s3.storage_toml()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut berth = Berth::start_with_data(&config, &dir.path().join("data"));
    let url = format!("{}/v2/proj/app/blobs/{digest}", berth.url());
    let client = tokio::spawn(reqwest::get(url.clone()));
    // Killed as soon as the server holds a part of the upload (or, if the
    // upload was quicker than that, once the object exists).
    let key = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s3.open_uploads().is_empty() && s3.object(&key).is_none() {
        assert!(std::time::Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    berth.kill9();
    let _ = client.await;
    // Under the digest: nothing, or the whole verified blob.
    if let Some(object) = s3.object(&key) {
        assert_eq!(sha256(&object), digest, "a partial object is visible");
    }

    let berth = Berth::start_with_data(&config, &dir.path().join("data"));
    let url = format!("{}/v2/proj/app/blobs/{digest}", berth.url());
    let again = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&again), digest);
    until_stored(&s3, &berth, &[&digest]).await;
    assert_eq!(sha256(&s3.object(&key).unwrap()), digest);
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
        let upstream = upstream_toml("fake.test", "http://127.0.0.1:9", "default = true");
        berth_testkit::berth::check_config_probe(
            &dir.path().join("berth.toml"),
            &format!(
                "data_dir = \"{}\"\n{upstream}{storage}",
                dir.path().join("data").display()
            ),
        )
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
