//! What a cold pull costs upstream, counted at the real token-auth
//! upstream: a new repository gets its token before its first request
//! (no 401), concurrent cold clients share that one token fetch, each
//! manifest and blob is fetched once, and the blobs of a manifest from
//! upstream are fetched before clients ask for them (within the eager
//! byte budget, and for an index only on the platforms configured).
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::{cached, eventually_cached, pseudo_random, sha256};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, Skopeo, TestRegistry, upstream_toml};
use bytes::Bytes;

/// The token requests the issuer answered for `scope`.
fn token_requests(up: &TestRegistry, scope: &str) -> usize {
    up.issuer()
        .token_log()
        .iter()
        .filter(|t| t.scopes.iter().any(|s| s == scope))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_pull_of_a_new_repository_costs_one_token_request_and_no_401() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "");
    let copy = |image: &'static str| {
        let mirror = berth.addr.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            Skopeo::new()
                .mirror(&mirror)
                .copy_to_dir(image, &dir.path().join("image"))
                .await
                .unwrap();
        }
    };
    // The first pull from this upstream learns its challenge: its only 401.
    copy("docker.io/library/multi:latest").await;
    let refused = up.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "{:?}", up.requests());
    up.reset_requests();
    up.issuer().reset_log();

    // Three clients pull a repository berth has never seen, at once.
    tokio::join!(
        copy("docker.io/library/small:latest"),
        copy("docker.io/library/small:latest"),
        copy("docker.io/library/small:latest"),
    );
    let requests = up.requests();
    assert!(
        requests.iter().all(|r| r.status == 200 && r.authorized),
        "{requests:?}"
    );
    assert_eq!(token_requests(&up, "repository:library/small:pull"), 1);
    assert_eq!(up.issuer().token_log().len(), 1);
    assert_eq!(up.count("GET", "/v2/library/small/manifests/latest"), 1);
    for blob in &small.blobs {
        assert_eq!(up.count("GET", &blob.digest), 1, "{}", blob.digest);
    }
    assert_eq!(requests.len(), 1 + small.blobs.len(), "{requests:?}");
}

/// GET a manifest through berth, as a client that takes what it is given.
async fn get_manifest(berth: &Berth, path: &str) -> reqwest::Response {
    let r = reqwest::get(format!("{}/v2/{path}", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r
}

/// The position of the first upstream request whose path ends with `end`.
fn position(up: &TestRegistry, end: &str) -> usize {
    up.requests()
        .iter()
        .position(|r| r.path.ends_with(end))
        .unwrap_or_else(|| panic!("no upstream request for {end}: {:?}", up.requests()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_from_upstream_starts_the_downloads_of_its_blobs() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "");
    get_manifest(&berth, "library/small/manifests/latest").await;
    // No client asked for a blob, yet every one is fetched, once, after
    // the manifest.
    for blob in &small.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
        assert_eq!(up.count("GET", &blob.digest), 1);
        assert!(position(&up, "/manifests/latest") < position(&up, &blob.digest));
    }
    // The client's downloads come from the cache. The first request for
    // each says MISS all the same: this pull brought the blob (and so
    // `berth prefetch` counts it as fetched); the next says HIT.
    let before = up.requests().len();
    for cache in ["MISS", "HIT"] {
        for blob in &small.blobs {
            let r = reqwest::get(format!(
                "{}/v2/library/small/blobs/{}",
                berth.url(),
                blob.digest
            ))
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-cache"], cache, "{}", blob.digest);
            assert_eq!(sha256(&r.bytes().await.unwrap()), blob.digest);
        }
    }
    assert_eq!(up.requests().len(), before, "{:?}", up.requests());
    let metrics = berth.metrics().await;
    let started = format!(
        "berth_cache_events_total{{kind=\"blob\",outcome=\"eager\"}} {}",
        small.blobs.len()
    );
    assert!(metrics.contains(&started), "{metrics}");
    let first_asked = format!(
        "berth_cache_events_total{{kind=\"blob\",outcome=\"ahead\"}} {}",
        small.blobs.len()
    );
    assert!(metrics.contains(&first_asked), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn eager_layers_off_fetches_only_what_clients_ask_for() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "eager_layers = false");
    get_manifest(&berth, "library/small/manifests/latest").await;
    let config = &small.blobs[0];
    let r = reqwest::get(format!(
        "{}/v2/library/small/blobs/{}",
        berth.url(),
        config.digest
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // The client's blob is fetched; by then a prefetch of the others would
    // have started (they start before the manifest is answered).
    assert!(eventually_cached(&berth.data_dir, &config.digest).await);
    for blob in &small.blobs[1..] {
        assert_eq!(up.count("GET", &blob.digest), 0, "{}", blob.digest);
        assert!(!cached(&berth.data_dir, &blob.digest));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetches_stay_within_the_eager_byte_budget() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let largest = small.largest_blob();
    assert!(largest.size > 256 << 10);
    let berth = Berth::start(&format!(
        "[cache]\neager_bytes = \"256KiB\"\n{}",
        berth_testkit::upstream_toml(
            "docker.io",
            &up.url(),
            "default = true\nauto_library = true"
        )
    ));
    get_manifest(&berth, "library/small/manifests/latest").await;
    for blob in small.blobs.iter().filter(|b| b.digest != largest.digest) {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
    }
    let skipped = "berth_cache_events_total{kind=\"blob\",outcome=\"eager_skipped\"} 1";
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = berth.metrics().await;
        if metrics.contains(skipped) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(metrics.contains(skipped), "{metrics}");
    assert_eq!(up.count("GET", &largest.digest), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_prefetches_only_the_platforms_configured() {
    let up = TestRegistry::start().await;
    let multi = &up.images().multi;
    let child = |platform: &str| {
        multi
            .children
            .iter()
            .find(|c| c.platform == platform)
            .unwrap()
    };
    let (amd64, arm64) = (child("linux/amd64"), child("linux/arm64"));
    let berth = Berth::hub(&up.url(), "prefetch_platforms = [\"linux/arm64\"]");
    get_manifest(&berth, "library/multi/manifests/latest").await;
    for blob in &arm64.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
        assert!(position(&up, &arm64.digest) < position(&up, &blob.digest));
    }
    assert!(position(&up, "/manifests/latest") < position(&up, &arm64.digest));
    assert_eq!(up.count("GET", &arm64.digest), 1);
    assert_eq!(up.count_path(&amd64.digest), 0);
    // The platform manifest is served from the cache now.
    let before = up.requests().len();
    let r = get_manifest(&berth, &format!("library/multi/manifests/{}", arm64.digest)).await;
    assert_eq!(r.bytes().await.unwrap(), arm64.manifest);
    assert_eq!(up.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_a_client_waits_for_goes_before_queued_prefetches() {
    let fake = FakeUpstream::start().await;
    // Six blobs, each taking about a second to send.
    let slow = || Canned {
        pieces: 10,
        pause: std::time::Duration::from_millis(100),
        ..Canned::default()
    };
    let digests: Vec<String> = (1..=6u32)
        .map(|seed| fake.blob(&pseudo_random(64 << 10, seed), slow()))
        .collect();
    let descriptor = |d: &String| {
        format!(
            r#"{{"mediaType":"application/octet-stream","digest":"{d}","size":{}}}"#,
            64 << 10
        )
    };
    let layers: Vec<String> = digests[1..].iter().map(descriptor).collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        descriptor(&digests[0]),
        layers.join(",")
    );
    fake.route(
        "proj/app/manifests/latest",
        Canned {
            body: Bytes::from(manifest),
            content_type: "application/vnd.oci.image.manifest.v1+json",
            ..Canned::default()
        },
    );
    // Two upstream slots: prefetches may hold one, the other is kept for
    // clients.
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nmax_concurrent = 2",
    ));
    let base = format!("{}/v2/proj/app", berth.url());
    let r = reqwest::get(format!("{base}/manifests/latest"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let blob_requests = || -> Vec<String> {
        fake.requests()
            .into_iter()
            .filter_map(|r| digests.iter().find(|d| r.contains(d.as_str())).cloned())
            .collect()
    };
    for _ in 0..100 {
        if !blob_requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // One prefetch holds the slot prefetches may use; five wait. A client
    // asks for one of those: it goes next, ahead of the four queued with it.
    let holder = blob_requests()
        .first()
        .cloned()
        .expect("a prefetch started");
    let wanted = digests.iter().rev().find(|d| **d != holder).unwrap();
    let r = reqwest::get(format!("{base}/blobs/{wanted}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&sha256(&r.bytes().await.unwrap()), wanted);
    let order = blob_requests();
    assert_eq!(
        order[..2],
        [holder, wanted.clone()],
        "{:?}",
        fake.requests()
    );
    // Every blob ends up cached, each fetched once.
    for d in &digests {
        assert!(eventually_cached(&berth.data_dir, d).await, "{d}");
    }
    assert_eq!(
        blob_requests().len(),
        digests.len(),
        "{:?}",
        fake.requests()
    );
}
