//! Pull benchmark: berth against the same upstream pulled directly, in one
//! run on 127.0.0.1, printed as a markdown table of ratios. Absolute times
//! on a shared machine are noise; the ratios are the figures.
//!
//! Run with `bench/run` (a release build). The upstream is distribution 2.8
//! with token auth behind the request-counting tap the tests use; direct
//! pulls go through the same tap, so both sides pay the same extra hop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::report::{Table, f, ratio, secs};
use berth_testkit::{Berth, TestRegistry, skopeo_copy_to_dir, upstream_toml};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn median(v: Vec<Duration>) -> f64 {
    berth_testkit::report::median(v.into_iter().map(f).collect())
}

async fn skopeo_pull(host: &str, reference: &str) -> Duration {
    let dest = tempfile::tempdir().unwrap();
    let start = Instant::now();
    skopeo_copy_to_dir(&format!("{host}/{reference}"), dest.path())
        .await
        .unwrap();
    start.elapsed()
}

/// GET a blob and discard it; time to the last byte.
async fn blob_get(client: &reqwest::Client, url: &str, token: Option<&str>) -> Duration {
    let start = Instant::now();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let response = req.send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }
    start.elapsed()
}

/// A row comparing berth with the direct upstream (times in seconds).
fn row(t: &mut Table, name: &str, berth: f64, direct: f64, goal: &str) {
    t.row(name, secs(berth), secs(direct), ratio(berth, direct), goal);
}

#[tokio::main]
async fn main() {
    let up = TestRegistry::start().await;
    let big = &up.images().big;
    let image_bytes: u64 =
        big.blobs.iter().map(|b| b.size).sum::<u64>() + big.manifest.len() as u64;
    let reference = big.reference();
    let hub = upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true\ntag_ttl = \"1h\"",
    );

    // Cold and warm pulls with skopeo.
    let (mut direct, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    let mut upstream_bytes = Vec::new();
    for _ in 0..RUNS {
        direct.push(skopeo_pull(&up.host(), &reference).await);
        let berth = Berth::start(&hub);
        up.reset_requests();
        cold.push(skopeo_pull(&berth.addr, &reference).await);
        let fetched: u64 = up
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.status == 200)
            .map(|r| {
                big.blobs
                    .iter()
                    .find(|b| r.path.ends_with(&b.digest))
                    .map_or_else(
                        || {
                            if r.path.contains("/manifests/") {
                                big.manifest.len() as u64
                            } else {
                                0
                            }
                        },
                        |b| b.size,
                    )
            })
            .sum();
        upstream_bytes.push(fetched as f64 / image_bytes as f64);
        warm.push(skopeo_pull(&berth.addr, &reference).await);
    }

    // The 48 MiB layer alone, warm, with a plain HTTP client.
    let blob = big.largest_blob();
    let berth = Berth::start(&hub);
    let client = reqwest::Client::new();
    let berth_url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    blob_get(&client, &berth_url, None).await;
    let token = up.issuer().mint(&["repository:library/big:pull"], None);
    let direct_url = format!("{}/v2/library/big/blobs/{}", up.registry_url(), blob.digest);
    let (mut blob_direct, mut blob_berth) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        blob_direct.push(blob_get(&client, &direct_url, Some(&token)).await);
        blob_berth.push(blob_get(&client, &berth_url, None).await);
    }

    let mib = image_bytes as f64 / f64::from(1 << 20);
    let mut t = Table::new();
    let direct = median(direct);
    row(
        &mut t,
        "cold pull, skopeo: berth / direct upstream",
        median(cold),
        direct,
        "<= 1.1",
    );
    row(
        &mut t,
        "warm pull, skopeo: berth / direct upstream",
        median(warm),
        direct,
        "—",
    );
    row(
        &mut t,
        "warm 48 MiB blob GET, one connection: berth / direct upstream",
        median(blob_berth),
        median(blob_direct),
        "—",
    );
    let worst = upstream_bytes.iter().copied().fold(0.0, f64::max);
    t.row(
        &format!("upstream bytes for a cold pull / image size (worst of {RUNS})"),
        format!("{worst:.2}"),
        "—".to_owned(),
        "—".to_owned(),
        "1.00",
    );
    t.note(format!(
        "{mib:.1} MiB image ({} blobs), median of {RUNS} runs; the direct upstream is \
         reached through the same tap as berth",
        big.blobs.len()
    ));
    t.print("berth pull benchmark (127.0.0.1)");
}
