//! Pulls with skopeo through berth from a real distribution registry with
//! token auth: cold and warm pulls, indexes and manifest lists, upstream
//! credentials, tag revalidation, and outages.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit as testkit;

use berth_testkit::checks::{assert_dir_holds, eventually_cached, json, oci_error, sample};
use berth_testkit::{Berth, Skopeo, TestRegistry, skopeo_copy_to_dir, upstream_toml};

/// Requests upstream answered with success (the token dance adds 401s).
fn answered(up: &TestRegistry, method: &str, path: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(path) && r.status < 300)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_pull_then_warm_pull_sends_nothing_upstream() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "tag_ttl = \"5m\"");
    up.reset_requests();
    up.issuer().reset_log();

    let cold = tempfile::tempdir().unwrap();
    skopeo_copy_to_dir(&format!("{}/library/small:latest", berth.addr), cold.path())
        .await
        .unwrap();
    assert_dir_holds(cold.path(), small);
    for blob in &small.blobs {
        assert_eq!(
            answered(&up, "GET", &blob.digest),
            1,
            "{:#?}",
            up.requests()
        );
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
    }
    assert_eq!(
        answered(&up, "GET", "/manifests/latest"),
        1,
        "{:#?}",
        up.requests()
    );
    assert!(up.issuer().token_requests() >= 1);
    // Upstream saw berth's bearer token on every request that succeeded.
    assert!(
        up.requests()
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.authorized)
    );

    up.reset_requests();
    up.issuer().reset_log();
    let blob_hits = r#"berth_cache_events_total{kind="blob",outcome="hit"}"#;
    let hits_before = sample(&berth.metrics().await, blob_hits);
    let warm = tempfile::tempdir().unwrap();
    skopeo_copy_to_dir(&format!("{}/library/small:latest", berth.addr), warm.path())
        .await
        .unwrap();
    assert_dir_holds(warm.path(), small);
    assert_eq!(
        up.requests(),
        vec![],
        "a warm pull within tag_ttl must not reach upstream"
    );
    assert_eq!(up.issuer().token_requests(), 0);
    // Each blob of the warm pull was a hit.
    let metrics = berth.metrics().await;
    assert_eq!(
        sample(&metrics, blob_hits) - hits_before,
        small.blobs.len() as f64,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_an_oci_index_and_a_docker_manifest_list() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    for image in [&up.images().multi, &up.images().multi_docker] {
        let raw = Skopeo::new()
            .inspect_raw(&format!("{}/{}", berth.addr, image.reference()))
            .await
            .unwrap();
        assert_eq!(
            raw,
            image.manifest,
            "index bytes of {} must be served as pushed",
            image.reference()
        );
        let dest = tempfile::tempdir().unwrap();
        Skopeo::new()
            .all()
            .copy_to_dir(
                &format!("{}/{}", berth.addr, image.reference()),
                dest.path(),
            )
            .await
            .unwrap();
        for child in &image.children {
            for blob in &child.blobs {
                let bytes =
                    std::fs::read(dest.path().join(blob.digest.trim_start_matches("sha256:")))
                        .unwrap();
                assert_eq!(testkit::checks::sha256(&bytes), blob.digest);
            }
            assert_eq!(
                answered(&up, "GET", &format!("/manifests/{}", child.digest)),
                1
            );
        }
    }
    let multi = &up.images().multi;
    assert_eq!(multi.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        up.images().multi_docker.media_type,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_credentials_open_private_repositories() {
    let up = TestRegistry::start().await;
    let private = &up.images().private_small;

    // Without credentials upstream refuses berth: a 403 DENIED, not a 404.
    let anonymous = Berth::hub(&up.url(), "");
    let url = format!(
        "{}/v2/{}/manifests/latest",
        anonymous.url(),
        private.repository
    );
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 403);
    let (code, message) = oci_error(response).await;
    assert_eq!(code, "DENIED");
    assert!(message.contains("docker.io"), "{message}");

    up.issuer().reset_log();
    // The token realm is another port of the upstream's host: listed with
    // its port, it may receive the credentials.
    let creds = format!(
        "username = \"puller\"\npassword = \"pullpass\"\nrealm_hosts = [\"{}\"]",
        up.issuer().addr()
    );
    let with_creds = Berth::hub(&up.url(), &creds);
    let dest = tempfile::tempdir().unwrap();
    skopeo_copy_to_dir(
        &format!("{}/{}", with_creds.addr, private.reference()),
        dest.path(),
    )
    .await
    .unwrap();
    assert_dir_holds(dest.path(), private);
    let log = up.issuer().token_log();
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|t| t.username.as_deref() == Some("puller")),
        "{log:?}"
    );

    // A wrong password is reported as such, not as a missing image.
    let wrong = Berth::hub(&up.url(), &creds.replace("pullpass", "nope"));
    let response = reqwest::get(format!(
        "{}/v2/{}/manifests/latest",
        wrong.url(),
        private.repository
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(oci_error(response).await.0, "DENIED");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tags_are_revalidated_with_a_head() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    // With tag_ttl 0 every request is past it.
    let berth = Berth::hub(&up.url(), "tag_ttl = \"0s\"");
    let url = format!("{}/v2/library/small/manifests/latest", berth.url());
    let first = reqwest::get(&url).await.unwrap();
    assert_eq!(
        first.headers()["docker-content-digest"],
        small.digest.as_str()
    );
    up.reset_requests();
    let second = reqwest::get(&url).await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.headers()["docker-content-digest"],
        small.digest.as_str()
    );
    assert_eq!(second.bytes().await.unwrap(), small.manifest);
    let manifest_requests: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/manifests/"))
        .collect();
    assert!(
        manifest_requests.iter().all(|r| r.method == "HEAD"),
        "{manifest_requests:?}"
    );
    assert_eq!(
        manifest_requests.iter().filter(|r| r.status == 200).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_serves_cached_tags_stale_and_uncached_as_5xx() {
    let mut up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "tag_ttl = \"1h\"");
    let dest = tempfile::tempdir().unwrap();
    skopeo_copy_to_dir(&format!("{}/library/small:latest", berth.addr), dest.path())
        .await
        .unwrap();
    up.stop();
    berth.reconfigure("tag_ttl = \"1h\"", "tag_ttl = \"0s\"");

    let response = reqwest::get(format!("{}/v2/library/small/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let warning = response
        .headers()
        .get("warning")
        .expect("stale answers carry a Warning")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(warning.starts_with("110 "), "{warning}");
    assert_eq!(response.bytes().await.unwrap(), small.manifest);

    // The whole image still pulls from the cache.
    let again = tempfile::tempdir().unwrap();
    skopeo_copy_to_dir(
        &format!("{}/library/small:latest", berth.addr),
        again.path(),
    )
    .await
    .unwrap();
    assert_dir_holds(again.path(), small);

    for path in ["library/small/manifests/v1", "library/big/manifests/latest"] {
        let response = reqwest::get(format!("{}/v2/{path}", berth.url()))
            .await
            .unwrap();
        // 502 while berth still tries upstream; 503 with Retry-After once
        // its circuit breaker opened and berth stopped asking.
        let status = response.status().as_u16();
        assert!(status == 502 || status == 503, "{path}: {status}");
        if status == 503 {
            assert!(response.headers().contains_key("retry-after"), "{path}");
        }
        let (code, message) = oci_error(response).await;
        assert_eq!(code, "UNAVAILABLE");
        assert!(message.contains("unreachable"), "{message}");
    }
    // At least the GET above and the pull's own manifest request were
    // answered stale.
    let metrics = berth.metrics().await;
    assert!(
        sample(
            &metrics,
            r#"berth_cache_events_total{kind="manifest",outcome="stale"}"#
        ) >= 2.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_while_upstream_is_unreachable() {
    let berth = Berth::start(&upstream_toml(
        "docker.io",
        "http://127.0.0.1:9",
        "default = true",
    ));
    let response = reqwest::get(format!("{}/v2/", berth.url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let health = json(
        reqwest::get(format!("{}/health", berth.url()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health["status"], "ok");
    let response = reqwest::get(format!("{}/v2/library/x/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
}
