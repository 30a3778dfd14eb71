//! What operators read: request and cache counters in `/metrics` (the
//! operational routes and failed pulls included) and the error bodies of
//! upstream answers, against the real upstream.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::sample;
use berth_testkit::{Berth, TestRegistry};

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_failed_pulls_are_counted() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    for _ in 0..3 {
        let r = reqwest::get(format!("{}/health", berth.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let missing = reqwest::get(format!("{}/v2/library/nothing/manifests/v1", berth.url()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let absent_blob = format!(
        "{}/v2/library/small/blobs/sha256:{}",
        berth.url(),
        "0".repeat(64)
    );
    assert_eq!(reqwest::get(&absent_blob).await.unwrap().status(), 404);
    berth.metrics().await;
    let metrics = berth.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"berth_http_requests_total{route="health",status="200"}"#
        ),
        3.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"berth_http_requests_total{route="metrics",status="200"}"#
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"berth_cache_events_total{kind="manifest",outcome="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"berth_cache_events_total{kind="blob",outcome="failed"}"#
        ),
        1.0
    );
    // Each API request's duration is in the histogram, under its route,
    // whatever the cache said.
    let timed = |route: &str| -> f64 {
        let prefix = format!("berth_http_request_duration_seconds_count{{route=\"{route}\",");
        metrics
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(timed("manifest"), 1.0, "{metrics}");
    assert_eq!(timed("blob"), 1.0, "{metrics}");
    let stats = reqwest::get(format!("{}/stats", berth.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    let average = stats["averageDurationMs"].as_f64();
    assert!(average.is_some_and(|ms| ms >= 0.0), "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_repositorys_tag_list_says_name_unknown() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    let r = reqwest::get(format!("{}/v2/library/nothing/tags/list", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let error = &body["errors"][0];
    assert_eq!(error["code"], "NAME_UNKNOWN", "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains("UNKNOWN"),
        "upstream's code in the message: {message}"
    );
}

/// skopeo pulls `library/small` twice (the second from the cache), and
/// one manifest is missing upstream.
async fn pull_twice_and_miss_once(berth: &Berth) {
    let dest = tempfile::tempdir().unwrap();
    for round in 0..2 {
        berth_testkit::Skopeo::new()
            .mirror(&berth.addr)
            .copy_to_dir(
                "docker.io/library/small:latest",
                &dest.path().join(round.to_string()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    }
    let missing = reqwest::get(format!("{}/v2/library/nothing/manifests/v1", berth.url()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

async fn json(url: &str) -> serde_json::Value {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_and_routes_say_what_the_mirror_did() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(
        &up.url(),
        "aliases = [\"hub\"]\n[cache]\nmax_size = \"1GiB\"\n",
    );
    pull_twice_and_miss_once(&berth).await;

    let stats = json(&format!("{}/stats", berth.url())).await;
    let metrics = berth.metrics().await;
    // The seed's fields, agreeing with the Prometheus counters.
    let requests = stats["requests"].as_u64().unwrap();
    let counted: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("berth_http_requests_total{")
                && !l.contains("route=\"health\"")
                && !l.contains("route=\"metrics\"")
                && !l.contains("route=\"stats\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(requests as f64, counted, "{stats}\n{metrics}");
    for key in [
        "errors",
        "timeouts",
        "bytesTransferred",
        "errorRate",
        "timeoutRate",
        "timestamp",
    ] {
        assert!(!stats[key].is_null(), "{key} missing: {stats}");
    }
    assert!(stats["lastTimeout"].is_null());
    let small = &up.images().small;
    let blob_bytes: u64 = small.blobs.iter().map(|b| b.size).sum();
    assert!(
        stats["bytesTransferred"].as_u64().unwrap() >= 2 * blob_bytes,
        "{stats}"
    );
    // The second pull was answered from the cache.
    let cache = &stats["cache"];
    let (hits, misses) = (
        cache["hits"].as_u64().unwrap(),
        cache["misses"].as_u64().unwrap(),
    );
    assert!(hits >= 3 && misses >= 1, "{cache}");
    let ratio = cache["hitRatio"].as_f64().unwrap();
    assert!((ratio - hits as f64 / (hits + misses) as f64).abs() < 1e-9);
    let minute = &cache["perMinute"][0];
    assert_eq!(
        minute["hits"].as_u64().unwrap() + minute["misses"].as_u64().unwrap(),
        hits + misses
    );
    assert_eq!(cache["capBytes"].as_u64(), Some(1 << 30));
    assert!(
        cache["usedBytes"].as_u64().unwrap() >= blob_bytes,
        "{cache}"
    );
    let hub = &stats["upstreams"][0];
    assert_eq!(hub["name"], "docker.io");
    assert_eq!(hub["mirrors"][0]["state"], "closed");
    assert_eq!(hub["mirrors"][0]["url"], up.url().trim_end_matches('/'));
    assert_eq!(
        stats["topRepositories"][0]["name"],
        "docker.io/library/small"
    );
    assert_eq!(stats["recentErrors"][0]["status"], 404);
    assert_eq!(
        stats["recentErrors"][0]["target"],
        "docker.io/library/nothing"
    );

    let routes = json(&format!("{}/routes", berth.url())).await;
    assert_eq!(routes["default"], "docker.io");
    let entry = &routes["upstreams"][0];
    assert_eq!(entry["aliases"][0], "hub");
    assert_eq!(entry["autoLibrary"], true);
    assert_eq!(entry["authMode"], "managed");
    assert!(!routes.to_string().contains("pullpass"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_admin_listener_stats_and_routes_live_there() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let admin = berth.admin_url().await;
    for path in ["/stats", "/routes"] {
        let public = reqwest::get(format!("{}{path}", berth.url()))
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{path} on the public port");
        json(&format!("{admin}{path}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_what_stats_says() {
    use berth_testkit::chromium::{attribute_of, dump_dom, screenshot, text_of};
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "[cache]\nmax_size = \"1GiB\"\n");
    pull_twice_and_miss_once(&berth).await;
    let stats = json(&format!("{}/stats", berth.url())).await;

    let page = format!("{}/dashboard", berth.url());
    let dom = tokio::task::spawn_blocking({
        let page = page.clone();
        move || dump_dom(&page)
    })
    .await
    .unwrap();
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never read /stats:\n{dom}"
    );
    let text = |id: &str| text_of(&dom, id).unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let attr = |id: &str, a: &str| {
        attribute_of(&dom, id, a).unwrap_or_else(|| panic!("no {a} on #{id} in:\n{dom}"))
    };
    assert_eq!(text("requests"), stats["requests"].to_string());
    assert_eq!(text("errors"), stats["errors"].to_string());
    assert_eq!(
        attr("bytes", "data-bytes"),
        stats["bytesTransferred"].to_string()
    );
    let cache = &stats["cache"];
    assert_eq!(attr("hit-ratio", "data-hits"), cache["hits"].to_string());
    assert_eq!(
        attr("hit-ratio", "data-misses"),
        cache["misses"].to_string()
    );
    assert_eq!(
        text("hit-ratio"),
        format!("{:.1} %", 100.0 * cache["hitRatio"].as_f64().unwrap())
    );
    assert_eq!(
        attr("cache-used", "data-bytes"),
        cache["usedBytes"].to_string()
    );
    assert_eq!(text("cache-cap"), "1.0 GiB");
    // The per-upstream row, the chart, the top repository and the error.
    let hub = &stats["upstreams"][0];
    let row = dom
        .split("data-upstream=\"docker.io\"")
        .nth(1)
        .expect("no docker.io row");
    assert!(
        row.contains(&format!("class=\"num requests\">{}<", hub["requests"])),
        "{row}"
    );
    assert!(dom.contains("<rect"), "no bar in the hit-ratio chart");
    assert!(dom.contains("data-name=\"docker.io/library/small\""));
    assert!(dom.contains("data-status=\"404\""));
    assert!(dom.contains("class=\"state state-closed\""));

    let shot = berth_testkit::target_dir().join("test-artefacts/dashboard.png");
    tokio::task::spawn_blocking(move || screenshot(&page, &shot))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_fits_800_and_1280_pixels_and_knows_the_size_without_a_cap() {
    use berth_testkit::chromium::{attribute_of, dump_dom_at, text_of};
    let up = TestRegistry::start().await;
    // A long mirror URL, as real ones are, and no size cap.
    let berth = Berth::hub(
        &up.url(),
        "mirrors = [\"http://a-rather-long-mirror-host-name.registry.internal.example.org:5000\"]\n",
    );
    pull_twice_and_miss_once(&berth).await;
    let page = format!("{}/dashboard", berth.url());
    for width in [1280, 800] {
        let dom = tokio::task::spawn_blocking({
            let page = page.clone();
            move || dump_dom_at(&page, width)
        })
        .await
        .unwrap();
        assert!(dom.contains("data-loaded=\"true\""), "{width}px:\n{dom}");
        // The page lists what does not fit in <body data-overflow>.
        let overflow = dom
            .split("data-overflow=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next());
        assert_eq!(
            overflow,
            Some(""),
            "{width}px: content does not fit:\n{dom}"
        );
        assert!(dom.contains("a-rather-long-mirror-host-name"), "{dom}");
        assert!(dom.contains("class=\"state state-closed\""), "{dom}");
        // No cap, but a known size: the store was counted.
        let used = attribute_of(&dom, "cache-used", "data-bytes").unwrap_or_default();
        assert!(used.parse::<u64>().is_ok_and(|n| n > 0), "{used:?}");
        let of = text_of(&dom, "cache-of").unwrap_or_default();
        assert!(of.contains("no size cap"), "{of:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_latency_errors_and_cache_gauges_are_exported() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "[cache]\nmax_size = \"1GiB\"\n");
    let small = &up.images().small;
    let r = reqwest::Client::new()
        .get(format!("{}/v2/library/small/manifests/latest", berth.url()))
        .header("accept", &small.media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let blob = format!(
        "{}/v2/library/small/blobs/{}",
        berth.url(),
        small.largest_blob().digest
    );
    reqwest::get(&blob).await.unwrap().bytes().await.unwrap();
    let missing = reqwest::get(format!("{}/v2/library/nothing/manifests/v1", berth.url()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let m = berth.metrics().await;
        if sample(&m, "berth_cache_size_bytes") > 0.0 {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no cache size:\n{m}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        sample(
            &metrics,
            r#"berth_upstream_response_seconds_count{upstream="docker.io",kind="manifest"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"berth_upstream_errors_total{upstream="docker.io",error="not_found"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "berth_cache_cap_bytes"),
        f64::from(1u32 << 30)
    );
    assert!(sample(&metrics, "berth_cache_size_bytes") >= small.largest_blob().size as f64);
    assert_eq!(sample(&metrics, "berth_fills_in_flight"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_hubs_ratelimit_remaining_is_a_gauge() {
    use berth_testkit::fake_upstream::{Canned, FakeUpstream};
    let fake = FakeUpstream::start().await;
    fake.route(
        "proj/app/manifests/v1",
        Canned {
            body: bytes::Bytes::from_static(FakeUpstream::MANIFEST),
            content_type: "application/vnd.oci.image.manifest.v1+json",
            headers: vec![("ratelimit-remaining", "76;w=21600".to_owned())],
            ..Canned::default()
        },
    );
    let berth = Berth::start(&berth_testkit::upstream_toml(
        "fake.test",
        &fake.url,
        "default = true",
    ));
    let r = reqwest::get(format!("{}/v2/proj/app/manifests/v1", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = berth.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"berth_upstream_ratelimit_remaining{upstream="fake.test"}"#
        ),
        76.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_cut_off_at_the_end_of_the_grace_period_is_logged() {
    let up = TestRegistry::start().await;
    let mut berth = Berth::hub(&up.url(), "");
    let big = up.images().big.largest_blob().clone();
    // 48 MiB at 1 MiB/s: far longer than the harness's 2 s grace.
    up.set_rate(Some(1 << 20));
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), big.digest);
    // The answer has begun (its headers are in) when berth is told to stop.
    let answer = reqwest::get(url).await.unwrap();
    assert_eq!(answer.status(), 200);
    let download = tokio::spawn(async move { answer.bytes().await.is_err() });
    let status = tokio::task::spawn_blocking(move || {
        let status = berth.terminate(std::time::Duration::from_secs(15));
        (status, berth)
    })
    .await
    .unwrap();
    let (status, berth) = status;
    assert!(status.is_some_and(|s| s.success()), "{}", berth.log());
    assert!(download.await.unwrap(), "the client got the whole blob");
    let log = berth.log();
    let line = log
        .lines()
        .find(|l| l.contains("served") && l.contains("route=\"blob\""))
        .unwrap_or_else(|| panic!("no access-log line for the cut-off blob:\n{log}"));
    assert!(line.contains("complete=false"), "{line}");
    assert!(log.contains("grace period over"), "{log}");
}
