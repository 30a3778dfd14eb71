//! Protocol edge cases against a real upstream: ranges, HEAD lengths,
//! routing by path prefix, Host and `ns`, `library/`, tag answers by Accept set, tag
//! lists, and refusal of malformed or hostile input.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::{assert_range, blob_path, eventually_cached, oci_error, raw_get};
use berth_testkit::{Berth, TestRegistry, upstream_toml};

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[tokio::test(flavor = "multi_thread")]
async fn small_blobs_are_answered_whole_and_in_ranges_from_memory() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let blob = small.blobs.iter().min_by_key(|b| b.size).unwrap().clone();
    let layer = small
        .blobs
        .iter()
        .find(|b| b.size > blob.size && b.size <= 64 << 10)
        .unwrap()
        .clone();
    let berth = Berth::hub(&up.url(), "");
    let client = reqwest::Client::new();
    for b in [&blob, &layer] {
        let expected = up.images().read_blob(&b.digest);
        let url = format!("{}/v2/library/small/blobs/{}", berth.url(), b.digest);
        for cache in ["MISS", "HIT", "HIT"] {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.headers()["x-cache"], cache);
            assert_eq!(r.content_length(), Some(b.size));
            assert_eq!(r.bytes().await.unwrap(), expected);
            assert!(eventually_cached(&berth.data_dir, &b.digest).await);
        }
        assert_range(&client, &url, (3, 9), &expected).await;
        let head = client.head(&url).send().await.unwrap();
        assert_eq!(
            head.headers()["content-length"],
            b.size.to_string().as_str()
        );
        // Held in memory: answered even with the file gone from the disk.
        std::fs::remove_file(blob_path(&berth.data_dir, &b.digest)).unwrap();
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.headers()["x-cache"], "HIT");
        assert_eq!(r.bytes().await.unwrap(), expected);
    }
    let gets = up.count("GET", &blob.digest) + up.count("GET", &layer.digest);
    assert!(
        gets <= 4,
        "each blob fetched once (plus token challenges): {gets}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_and_head_lengths() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "");
    let client = reqwest::Client::new();
    let blob = small.largest_blob();
    let expected = up.images().read_blob(&blob.digest);
    let url = format!("{}/v2/library/small/blobs/{}", berth.url(), blob.digest);
    let full = client.get(&url).send().await.unwrap();
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap(), expected);

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        blob.size.to_string().as_str()
    );
    assert_eq!(
        head.headers()["docker-content-digest"],
        blob.digest.as_str()
    );

    assert_range(&client, &url, (10, 19), &expected).await;
    let suffix = client
        .get(&url)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        suffix.bytes().await.unwrap(),
        &expected[expected.len() - 5..]
    );

    let beyond = client
        .get(&url)
        .header("range", format!("bytes={}-", blob.size))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", blob.size).as_str()
    );
    assert_eq!(oci_error(beyond).await.0, "RANGE_INVALID");

    let manifest_url = format!("{}/v2/library/small/manifests/latest", berth.url());
    let get = client
        .get(&manifest_url)
        .header("accept", DOCKER_V2)
        .send()
        .await
        .unwrap();
    let get_len = get.headers()["content-length"].clone();
    let get_type = get.headers()["content-type"].clone();
    let body = get.bytes().await.unwrap();
    assert_eq!(body, small.manifest);
    assert_eq!(get_len, body.len().to_string().as_str());
    let head = client
        .head(&manifest_url)
        .header("accept", DOCKER_V2)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-length"], get_len);
    assert_eq!(head.headers()["content-type"], get_type);
    assert_eq!(
        head.headers()["docker-content-digest"],
        small.digest.as_str()
    );
    assert_eq!(
        head.headers()["etag"],
        format!("\"{}\"", small.digest).as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_by_prefix_host_ns_and_library() {
    let up = TestRegistry::start().await;
    let config = format!(
        "domain = \"mirror.test\"\n{}{}",
        upstream_toml("fallback.test", "http://127.0.0.1:9", "default = true"),
        upstream_toml(
            "docker.io",
            &up.url(),
            "auto_library = true\nhost_prefix = \"hub\"\naliases = [\"hub\"]"
        ),
    );
    let berth = Berth::start(&config);
    let client = reqwest::Client::new();
    let get = |path: &str, host: Option<&str>| {
        let mut r = client
            .get(format!("{}/v2/{path}", berth.url()))
            .header("accept", DOCKER_V2);
        if let Some(h) = host {
            r = r.header("host", h);
        }
        r.send()
    };
    // The default upstream is a closed port: 502, saying why.
    let refused = get("small/manifests/latest", None).await.unwrap();
    assert_eq!(refused.status(), 502);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("is unreachable: connection refused"),
        "{body}"
    );
    up.reset_requests();
    // Path prefix (name and alias), ns and Host all reach docker.io, with library/ added.
    assert_eq!(
        get("docker.io/small/manifests/latest", None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("hub/small/manifests/v1", None).await.unwrap().status(),
        200
    );
    assert_eq!(
        get("small/manifests/latest?ns=docker.io", None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("library/small/tags/list", Some("hub.mirror.test:5000"))
            .await
            .unwrap()
            .status(),
        200
    );
    let paths: Vec<String> = up
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.path)
        .collect();
    assert!(
        paths.iter().all(|p| p.starts_with("/v2/library/small/")),
        "{paths:?}"
    );
    // An unknown ns is refused and never dialled.
    up.reset_requests();
    let refused = get("small/manifests/latest?ns=evil.example", None)
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let (code, message) = oci_error(refused).await;
    assert_eq!(code, "NAME_UNKNOWN");
    assert!(message.contains("evil.example"), "{message}");
    assert!(up.requests_beyond_ping().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_client_gets_the_tag_answer_for_its_accept_set() {
    let up = TestRegistry::start().await;
    let list = &up.images().multi_docker;
    let amd64 = list
        .children
        .iter()
        .find(|c| c.platform == "linux/amd64")
        .unwrap();
    let berth = Berth::hub(&up.url(), "");
    let client = reqwest::Client::new();
    let url = format!("{}/v2/{}/manifests/latest", berth.url(), list.repository);
    // A client that cannot read manifest lists gets upstream's single-platform answer.
    let single = client
        .get(&url)
        .header("accept", DOCKER_V2)
        .send()
        .await
        .unwrap();
    assert_eq!(single.status(), 200);
    assert_eq!(single.headers()["content-type"], DOCKER_V2);
    assert_eq!(
        single.headers()["docker-content-digest"],
        amd64.digest.as_str()
    );
    // One that can gets the list, not the cached single manifest.
    let both = client
        .get(&url)
        .header("accept", DOCKER_V2)
        .header("accept", DOCKER_LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(both.headers()["content-type"], DOCKER_LIST);
    assert_eq!(
        both.headers()["docker-content-digest"],
        list.digest.as_str()
    );
    assert_eq!(both.bytes().await.unwrap(), list.manifest);
    // Both accept lines were forwarded upstream, not folded into one.
    let forwarded = up
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/manifests/latest") && r.status == 200)
        .unwrap();
    assert_eq!(
        forwarded.accept,
        vec![DOCKER_V2.to_owned(), DOCKER_LIST.to_owned()]
    );
    // Each client keeps getting its own answer, from the cache.
    up.reset_requests();
    let again = client
        .get(&url)
        .header("accept", DOCKER_V2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.headers()["docker-content-digest"],
        amd64.digest.as_str()
    );
    let again = client
        .get(&url)
        .header("accept", format!("{DOCKER_LIST}, {DOCKER_V2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.headers()["docker-content-digest"],
        list.digest.as_str()
    );
    // (The amd64 manifest's layers may still be prefetching.)
    assert_eq!(up.count_path("/manifests/"), 0, "{:?}", up.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_lists_are_proxied_with_their_query() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    let all: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!("{}/v2/small/tags/list", berth.url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(all["name"], "library/small");
    assert_eq!(all["tags"], serde_json::json!(["latest", "v1"]));
    up.reset_requests();
    let page = reqwest::get(format!(
        "{}/v2/small/tags/list?n=1&last=latest&x=y",
        berth.url()
    ))
    .await
    .unwrap();
    assert_eq!(page.status(), 200);
    let sent = up
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/tags/list") && r.status == 200)
        .unwrap();
    assert_eq!(sent.query.as_deref(), Some("n=1&last=latest"));
    let bad = reqwest::get(format!("{}/v2/small/tags/list?n=lots", berth.url()))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = reqwest::get(format!("{}/v2/nothing/tags/list", berth.url()))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_hostile_requests_are_refused() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    up.reset_requests();
    let cases = [
        ("/v2/library/small/blobs/sha256:1234", 400, "DIGEST_INVALID"),
        ("/v2/library/small/blobs/md5:abc", 400, "DIGEST_INVALID"),
        (
            "/v2/library/small/manifests/sha256:zz",
            400,
            "DIGEST_INVALID",
        ),
        ("/v2/Library/Small/manifests/latest", 400, "NAME_INVALID"),
        (
            "/v2/library/../../etc/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/library/%2e%2e/%2e%2e/etc/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/library/..%2f..%2fetc/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/library/small/blobs/sha256:../../../../etc/passwd",
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/library/small/blobs/sha256%3a..%2f..%2fetc",
            400,
            "DIGEST_INVALID",
        ),
        ("/v2/library/small/manifests/..", 400, "MANIFEST_INVALID"),
        ("/v2/library/small/whatever", 404, "UNSUPPORTED"),
    ];
    for (path, status, code) in cases {
        let (got, body) = raw_get(&berth.addr, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body.contains(&format!("\"code\":\"{code}\"")),
            "{path}: {body}"
        );
    }
    // Only the challenge berth learns at start may have gone upstream.
    let reached = up.requests_beyond_ping();
    assert!(
        reached.is_empty(),
        "refused requests reached upstream: {reached:?}"
    );
    assert!(!berth.data_dir.join("etc").exists());

    let client = reqwest::Client::new();
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let response = client
            .request(
                method.clone(),
                format!("{}/v2/library/small/manifests/latest", berth.url()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(oci_error(response).await.0, "UNSUPPORTED");
    }
    let upload = client
        .post(format!("{}/v2/library/small/blobs/uploads/", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_are_proxied() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "");
    up.reset_requests();
    let url = format!(
        "{}/v2/library/small/referrers/{}?artifactType=application/vnd.example+json",
        berth.url(),
        small.digest
    );
    let response = reqwest::get(&url).await.unwrap();
    // distribution 2.8 has no referrers API: its 404 reaches the client as an
    // OCI error, which tells clients to fall back to the tag schema.
    assert_eq!(response.status(), 404);
    assert!(!oci_error(response).await.0.is_empty());
    let sent = up
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/referrers/") && r.status != 401)
        .unwrap();
    assert_eq!(
        sent.path,
        format!("/v2/library/small/referrers/{}", small.digest)
    );
    assert_eq!(
        sent.query.as_deref(),
        Some("artifactType=application%2Fvnd.example%2Bjson")
    );
    let bad = reqwest::get(format!(
        "{}/v2/library/small/referrers/{}?artifactType=%3Cscript%3E",
        berth.url(),
        small.digest
    ))
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
}
