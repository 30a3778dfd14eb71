//! Several replicas as one cache, each on its own disk (`fs` + cluster),
//! and what the fleet shares beside blobs: cold clients spread over the
//! replicas cause one upstream GET; a replica that never saw an image reads
//! it from a peer, manifests included; a peer that evicted a blob is asked
//! no more; the peer endpoint refuses a request without the cluster
//! secret; the rate limit holds over the fleet; `/stats` and the dashboard
//! show the replicas and Redis.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fleet;

use berth_testkit::checks::{assert_dir_holds, sha256};
use berth_testkit::{TestRegistry, skopeo_copy_to_dir};
use fleet::{Fleet, get_verified, metric, until_metric, until_upstream_asked};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn on_own_disks_cold_clients_over_three_replicas_cause_one_upstream_get() {
    let up = TestRegistry::start().await;
    let fleet = Fleet::start(&up, None, 3, "");
    let blob = up.images().big.largest_blob().clone();
    fleet.cold_clients(&up, &blob, 30).await;
    assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
    // Every replica keeps its own copy: a later GET on each is a hit.
    for i in 0..3 {
        let url = format!("{}/v2/library/big/blobs/{}", fleet.url(i), blob.digest);
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.headers()["x-cache"], "HIT");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_own_disks_a_replica_that_never_saw_an_image_pulls_it_from_a_peer() {
    let up = TestRegistry::start().await;
    let fleet = Fleet::start(&up, None, 2, "");
    let image = up.images().small.clone();
    let dest = tempfile::tempdir().unwrap();
    let first = dest.path().join("first");
    skopeo_copy_to_dir(
        &format!("{}/library/small:latest", fleet.replicas[0].addr),
        &first,
    )
    .await
    .unwrap();
    up.reset_requests();
    let second = dest.path().join("second");
    skopeo_copy_to_dir(
        &format!("{}/library/small:latest", fleet.replicas[1].addr),
        &second,
    )
    .await
    .unwrap();
    assert_dir_holds(&second, &image);
    for blob in &image.blobs {
        assert_eq!(up.count("GET", &blob.digest), 0, "{:#?}", up.requests());
    }
    let size: u64 = image.blobs.iter().map(|b| b.size).sum();
    assert!(metric(&fleet.replicas[1], "berth_cluster_peer_bytes_in_total").await >= size);
    assert!(metric(&fleet.replicas[0], "berth_cluster_peer_bytes_out_total").await >= size);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_own_disks_a_tag_fetched_by_one_replica_serves_the_others_without_upstream() {
    let up = TestRegistry::start().await;
    let fleet = Fleet::start(&up, None, 3, "");
    let image = up.images().small.clone();
    let dest = tempfile::tempdir().unwrap();
    fleet
        .pull_through_each("small", &image, dest.path(), "via", 3)
        .await;
    // Each manifest (the tag, and by digest what it lists) went upstream
    // once for the three replicas, each blob too: the others read them
    // from a peer.
    let mut manifests: Vec<String> = up
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/manifests/"))
        .map(|r| r.path)
        .collect();
    assert!(!manifests.is_empty());
    let all = manifests.len();
    manifests.dedup();
    assert_eq!(manifests.len(), all, "{:#?}", up.requests());
    assert_eq!(
        up.count_path("/manifests/latest"),
        1,
        "{:#?}",
        up.requests()
    );
    for blob in &image.blobs {
        assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
    }
    for i in 1..3 {
        assert!(
            metric(
                &fleet.replicas[i],
                "berth_cluster_events_total{event=\"peer_manifest\"}"
            )
            .await
                >= 1
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_own_disks_a_replica_that_evicted_a_blob_is_asked_for_it_no_more() {
    const TOKEN: &str = "an-admin-token-of-some-length";
    let up = TestRegistry::start().await;
    let fleet = Fleet::start(&up, None, 3, &format!("[admin]\ntoken = {TOKEN:?}\n"));
    let blob = up.images().big.largest_blob().clone();
    let get = |i: usize| {
        get_verified(
            format!("{}/v2/library/big/blobs/{}", fleet.url(i), blob.digest),
            blob.digest.clone(),
        )
    };
    let image = up.images().big.clone();
    let dest = tempfile::tempdir().unwrap();
    fleet
        .pull_through_each("big", &image, dest.path(), "via", 1)
        .await;
    // Replica 0 lets the image go (as eviction would).
    let purged = reqwest::Client::new()
        .post(format!(
            "{}/admin/cache/purge?pattern=library/big",
            fleet.url(0)
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200, "{:?}", purged.text().await);
    // Replica 1 asks it, hears 404, and fetches upstream.
    get(1).await;
    assert_eq!(up.count("GET", &blob.digest), 2, "{:#?}", up.requests());
    assert_eq!(
        metric(
            &fleet.replicas[1],
            "berth_cluster_events_total{event=\"peer_failed\"}"
        )
        .await,
        1
    );
    // Replica 2 is sent to replica 1, which holds it, never to replica 0.
    get(2).await;
    assert_eq!(up.count("GET", &blob.digest), 2, "{:#?}", up.requests());
    assert_eq!(
        metric(
            &fleet.replicas[2],
            "berth_cluster_events_total{event=\"peer_failed\"}"
        )
        .await,
        0
    );
    assert!(metric(&fleet.replicas[2], "berth_cluster_peer_bytes_in_total").await >= blob.size);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_peer_endpoint_refuses_a_request_without_the_secret() {
    let up = TestRegistry::start().await;
    let fleet = Fleet::start(&up, None, 1, "");
    let blob = up.images().small.blobs[0].clone();
    // Cached on the replica first.
    get_verified(
        format!("{}/v2/library/small/blobs/{}", fleet.url(0), blob.digest),
        blob.digest.clone(),
    )
    .await;
    let url = format!("{}/_berth/peer/blobs/{}", fleet.url(0), blob.digest);
    let client = reqwest::Client::new();
    for auth in [
        None,
        Some("Bearer wrong-secret-of-the-same-size!"),
        Some("Basic YTpi"),
    ] {
        let mut request = client.get(&url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains("UNAUTHORIZED"), "{body}");
        assert!(!body.contains(&blob.digest), "{body}");
    }
    let r = client
        .get(&url)
        .bearer_auth("a-cluster-secret-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().await.unwrap()), blob.digest);
    assert_eq!(
        metric(
            &fleet.replicas[0],
            "berth_cluster_events_total{event=\"peer_refused\"}"
        )
        .await,
        3
    );
}

/// Requests to `/v2/` from this client, round robin over `urls`, until
/// `n` were sent: how many were let through.
async fn allowed(urls: &[String], n: usize) -> usize {
    let client = reqwest::Client::new();
    let mut ok = 0;
    for i in 0..n {
        let r = client
            .get(format!("{}/v2/", urls[i % urls.len()]))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => assert!(r.headers().contains_key("retry-after")),
            other => panic!("status {other}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_holds_over_the_fleet() {
    let up = TestRegistry::start().await;
    let fleet = Fleet::start(&up, None, 3, "[limits]\nrate = 1\nburst = 9\n");
    let urls: Vec<String> = (0..3).map(|i| fleet.url(i)).collect();
    // A burst of 10 and one a second: spread over three replicas, the
    // client gets what one replica would give it, not three times that.
    let spread = allowed(&urls, 30).await;
    assert!((10..=12).contains(&spread), "{spread} let through");
    for r in &fleet.replicas {
        let failed = metric(r, "berth_cluster_events_total{event=\"redis_failed\"}").await;
        assert_eq!(failed, 0, "{}", r.log());
    }
    // Without Redis, each replica counts on its own.
    let mut fleet = fleet;
    fleet.redis.stop();
    for r in &fleet.replicas {
        until_metric(r, "berth_cluster_redis_up", 0).await;
    }
    let alone = allowed(&urls, 45).await;
    assert!(
        alone >= 2 * spread,
        "{alone} let through by three replicas counting alone, {spread} by the fleet"
    );
}

/// `/stats` of the berth at `base`.
async fn stats_of(base: &str) -> serde_json::Value {
    let body = reqwest::get(format!("{base}/stats"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_and_the_dashboard_show_the_replicas_and_redis() {
    use berth_testkit::chromium::{attribute_of, dump_dom};
    let up = TestRegistry::start().await;
    let mut fleet = Fleet::start(&up, None, 2, "");
    let mut nodes: Vec<String> = (0..2)
        .map(|i| format!("http://{}", fleet.replicas[i].addr))
        .collect();
    let this_one = nodes[0].clone();
    nodes.sort();
    // Both heartbeats are in.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let stats = stats_of(&fleet.url(0)).await;
        if stats["cluster"]["replicas"].as_array().map(Vec::len) == Some(2) {
            break stats;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cluster = &stats["cluster"];
    assert_eq!(cluster["redis"], "up");
    assert_eq!(cluster["node"], this_one);
    let replicas = cluster["replicas"].as_array().unwrap();
    let seen: Vec<&str> = replicas
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(seen, nodes);
    for r in replicas {
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"), "{r}");
        assert!(r["startedAt"].as_str().unwrap().starts_with("20"), "{r}");
        // Beats come every second.
        assert!(r["lastBeatMsAgo"].as_u64().unwrap() <= 3_000, "{r}");
        assert_eq!(r["downloads"], 0, "{r}");
    }
    let page = format!("{}/dashboard", fleet.url(0));
    let dom = tokio::task::spawn_blocking(move || dump_dom(&page))
        .await
        .unwrap();
    assert_eq!(
        attribute_of(&dom, "cluster-summary", "data-redis").as_deref(),
        Some("up"),
        "{dom}"
    );
    for node in &nodes {
        assert!(dom.contains(&format!("data-node=\"{node}\"")), "{dom}");
    }
    // Redis gone: /stats says so, and lists no replica it cannot know.
    fleet.redis.stop();
    until_metric(&fleet.replicas[0], "berth_cluster_redis_up", 0).await;
    let stats = stats_of(&fleet.url(0)).await;
    assert_eq!(stats["cluster"]["redis"], "down");
    assert_eq!(stats["cluster"]["replicas"], serde_json::json!([]));
}

#[test]
fn check_config_probe_tries_redis_without_serving() {
    let mut redis = berth_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-cluster-secret-for-tests").unwrap();
    let probe = |redis_url: &str| {
        let upstream =
            berth_testkit::upstream_toml("fake.test", "http://127.0.0.1:9", "default = true");
        berth_testkit::berth::check_config_probe(
            &dir.path().join("berth.toml"),
            &format!(
                "listen = \"127.0.0.1:5999\"\ndata_dir = \"{}\"\n{upstream}[cluster]\nredis_url = \"{redis_url}\"\nsecret_file = {secret:?}\n",
                dir.path().join("data").display()
            ),
        )
    };
    let (code, text) = probe(&redis.url());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("probe: Redis answers"), "{text}");
    redis.stop();
    let (code, text) = probe(&redis.url());
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("cluster.redis_url: Redis at"), "{text}");
    assert!(!dir.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_holds_over_the_fleet() {
    let up = TestRegistry::start().await;
    let fleet = Fleet::start(&up, None, 2, "");
    // One request at a time for the whole fleet.
    for r in &fleet.replicas {
        r.reconfigure(
            "auto_library = true",
            "auto_library = true\nmax_concurrent = 1",
        );
    }
    let (first, second) = (&up.images().big, &up.images().small);
    let (slow, quick) = (first.largest_blob(), second.largest_blob());
    up.set_rate(Some(8 << 20));
    let holder = tokio::spawn(get_verified(
        format!("{}/v2/library/big/blobs/{}", fleet.url(0), slow.digest),
        slow.digest.clone(),
    ));
    // Replica 0's download is under way (its answer's head went out).
    until_upstream_asked(&up, &slow.digest).await;
    let other = tokio::spawn(get_verified(
        format!("{}/v2/library/small/blobs/{}", fleet.url(1), quick.digest),
        quick.digest.clone(),
    ));
    // Replica 1 waits for the fleet's one slot, and sends nothing meanwhile.
    until_metric(
        &fleet.replicas[1],
        "berth_cluster_events_total{event=\"slot_waited\"}",
        1,
    )
    .await;
    assert_eq!(up.count("GET", &quick.digest), 0, "{:#?}", up.requests());
    up.set_rate(None);
    holder.await.unwrap();
    other.await.unwrap();
    assert_eq!(up.count("GET", &quick.digest), 1);
}
