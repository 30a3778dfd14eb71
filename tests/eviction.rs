//! The cache's size cap against the real upstream: images pushed into it
//! are pulled through berth one after another until the store passes
//! `[cache] max_size`; the least recently pulled go, a pinned image stays
//! although it is the oldest, and an evicted image pulls again with one
//! upstream fetch per blob (none of it is served from memory).
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::{cached, pseudo_random, sha256};
use berth_testkit::{Berth, PushedImage, TestRegistry, upstream_toml};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

const LAYER: u32 = 1 << 20;

/// Three images of one distinct 1 MiB layer each: a, b, c.
async fn images(up: &TestRegistry) -> Vec<PushedImage> {
    let mut pushed = Vec::new();
    for (seed, name) in [(11, "a"), (12, "b"), (13, "c")] {
        let layer = pseudo_random(LAYER, seed);
        pushed.push(
            up.push_image(&format!("library/{name}"), "latest", &[layer])
                .await,
        );
    }
    pushed
}

/// Pull `image` (library/`name`) through berth as a client would: the
/// manifest, then each blob, checking every digest.
async fn pull(berth: &Berth, name: &str, image: &PushedImage) {
    let base = format!("{}/v2/library/{name}", berth.url());
    let manifest = reqwest::Client::new()
        .get(format!("{base}/manifests/latest"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200, "{name}");
    assert_eq!(manifest.bytes().await.unwrap(), image.manifest);
    for digest in &image.blobs {
        let r = reqwest::get(format!("{base}/blobs/{digest}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name} {digest}");
        assert_eq!(&sha256(&r.bytes().await.unwrap()), digest);
    }
}

/// Every file of `image` in berth's store: its manifest and blobs.
fn files(image: &PushedImage) -> Vec<String> {
    std::iter::once(image.digest.clone())
        .chain(image.blobs.iter().cloned())
        .collect()
}

/// Bytes on disk of every committed blob under `data`.
fn store_bytes(data: &Path) -> u64 {
    let mut total = 0;
    for shard in std::fs::read_dir(data.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        for file in std::fs::read_dir(shard.path()).unwrap().flatten() {
            total += file.metadata().unwrap().blocks() * 512;
        }
    }
    total
}

/// Bytes on disk of an image's files under `data`.
fn image_bytes(data: &Path, image: &PushedImage) -> u64 {
    files(image)
        .iter()
        .map(|d| {
            std::fs::metadata(berth_testkit::checks::blob_path(data, d))
                .unwrap()
                .blocks()
                * 512
        })
        .sum()
}

/// Waits until none of `image`'s files is in the store.
async fn evicted(data: &Path, image: &PushedImage) -> bool {
    for _ in 0..100 {
        if files(image).iter().all(|d| !cached(data, d)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A berth in front of `up` with `extra` config.
fn start(up: &TestRegistry, extra: &str) -> Berth {
    Berth::start(&format!(
        "{extra}\n{}",
        upstream_toml(
            "docker.io",
            &up.url(),
            "default = true\nauto_library = true"
        )
    ))
}

/// Pulls a, b, c through `berth`, in that order.
async fn pull_in_order(berth: &Berth, pushed: &[PushedImage]) {
    for (name, image) in ["a", "b", "c"].iter().zip(pushed) {
        pull(berth, name, image).await;
        for d in files(image) {
            assert!(berth_testkit::checks::eventually_cached(&berth.data_dir, &d).await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pulls a, b, c through a berth with `extra` config, in that order, and
/// returns it.
async fn pull_all(up: &TestRegistry, pushed: &[PushedImage], extra: &str) -> Berth {
    let berth = start(up, extra);
    pull_in_order(&berth, pushed).await;
    berth
}

#[tokio::test(flavor = "multi_thread")]
async fn the_least_recently_pulled_go_and_a_pinned_image_stays() {
    let up = TestRegistry::start().await;
    let pushed = images(&up).await;
    // How much the three take on this disk, with no cap.
    let measured = pull_all(&up, &pushed, "").await;
    let sizes: Vec<u64> = pushed
        .iter()
        .map(|i| image_bytes(&measured.data_dir, i))
        .collect();
    drop(measured);
    // A cap half an image under all three: the oldest must go.
    let cap = sizes.iter().sum::<u64>() - sizes[0] / 2;
    let config = format!("[cache]\nmax_size = {cap}");

    let berth = pull_all(&up, &pushed, &config).await;
    assert!(
        evicted(&berth.data_dir, &pushed[0]).await,
        "{}",
        berth.log()
    );
    for image in &pushed[1..] {
        assert!(files(image).iter().all(|d| cached(&berth.data_dir, d)));
    }
    assert!(store_bytes(&berth.data_dir) <= cap);
    // The log line follows the deletions (and the log writer runs apart).
    berth_testkit::checks::until(
        Duration::from_secs(10),
        || berth.logged("evicted least recently used blobs"),
        || berth.log(),
    )
    .await;
    // `cache ls` says the evicted tag's content is gone.
    let ls = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cache", "ls", "--config"])
        .arg(berth.config_path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&ls.stdout);
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} in {listed}"))
    };
    assert!(
        line("library/a:latest").ends_with("(content evicted; pulled again on use)"),
        "{listed}"
    );
    assert!(!line("library/c:latest").contains("evicted"), "{listed}");

    // A pinned image stays although it is the oldest: the next one goes.
    let pinned = pull_all(
        &up,
        &pushed,
        &format!("{config}\npin = [\"docker.io/library/a\"]"),
    )
    .await;
    assert!(
        evicted(&pinned.data_dir, &pushed[1]).await,
        "{}",
        pinned.log()
    );
    assert!(
        files(&pushed[0])
            .iter()
            .all(|d| cached(&pinned.data_dir, d))
    );
    assert!(store_bytes(&pinned.data_dir) <= cap);
    drop(pinned);

    // The same with the pin added while berth serves, by the CLI.
    let served = start(&up, &config);
    let pin = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cache", "pin", "docker.io/library/a", "--config"])
        .arg(served.config_path())
        .output()
        .unwrap();
    assert!(pin.status.success());
    assert_eq!(
        String::from_utf8_lossy(&pin.stdout).trim(),
        "pinned  docker.io/library/a"
    );
    pull_in_order(&served, &pushed).await;
    assert!(
        evicted(&served.data_dir, &pushed[1]).await,
        "{}",
        served.log()
    );
    assert!(
        files(&pushed[0])
            .iter()
            .all(|d| cached(&served.data_dir, d))
    );
    drop(served);

    // The evicted image pulls again, from upstream: its manifest and its
    // config, which were served from memory before, too. One fetch each.
    let gone = &pushed[0];
    up.reset_requests();
    pull(&berth, "a", gone).await;
    assert_eq!(up.count("GET", "/v2/library/a/manifests/latest"), 1);
    for d in &gone.blobs {
        assert_eq!(up.count("GET", d), 1, "{d}: {:?}", up.requests());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_evicted_while_a_client_reads_it_still_arrives_whole() {
    let up = TestRegistry::start().await;
    let pushed = images(&up).await;
    let big = &up.images().big;
    let layer = big.largest_blob();
    // Room for the big layer and two of the small images, not three.
    let small: u64 = (u64::from(LAYER) + (64 << 10)) * 2;
    let config = format!(
        "[cache]\nmax_size = {}\n{}",
        layer.size + small,
        upstream_toml(
            "docker.io",
            &up.url(),
            "default = true\nauto_library = true"
        )
    );
    let berth = Berth::start(&config);
    let url = format!("{}{}", berth.url(), big.blob_path(layer));
    let first = reqwest::get(&url).await.unwrap();
    assert_eq!(&sha256(&first.bytes().await.unwrap()), &layer.digest);
    assert!(berth_testkit::checks::eventually_cached(&berth.data_dir, &layer.digest).await);

    // A client starts reading the cached layer, and stops after 4 MiB.
    let mut reading = reqwest::get(&url).await.unwrap();
    let mut received = Vec::new();
    while received.len() < 4 << 20 {
        received.extend_from_slice(&reading.chunk().await.unwrap().unwrap());
    }
    // Meanwhile three images are pulled: the layer, the least recently
    // used, is evicted.
    for (name, image) in ["a", "b", "c"].iter().zip(&pushed) {
        pull(&berth, name, image).await;
    }
    let path = berth_testkit::checks::blob_path(&berth.data_dir, &layer.digest);
    for _ in 0..100 {
        if !path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!path.exists(), "the layer was not evicted: {}", berth.log());
    // The reader gets the rest, every byte right.
    while let Some(chunk) = reading.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len() as u64, layer.size);
    assert_eq!(sha256(&received), layer.digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_larger_than_the_cap_is_served_uncached_and_evicts_nothing() {
    let up = TestRegistry::start().await;
    let pushed = images(&up).await;
    let big = &up.images().big;
    let layer = big.largest_blob();
    // Room for the small images, far from room for the big layer.
    let berth = start(&up, &format!("[cache]\nmax_size = {}", 8 << 20));
    pull(&berth, "a", &pushed[0]).await;
    for d in files(&pushed[0]) {
        assert!(berth_testkit::checks::eventually_cached(&berth.data_dir, &d).await);
    }
    let url = format!("{}{}", berth.url(), big.blob_path(layer));
    for _ in 0..2 {
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&sha256(&r.bytes().await.unwrap()), &layer.digest);
    }
    // Said why, fetched each time, never written, and nothing else went.
    assert!(
        berth.logged("is larger than the cache's max_size (8388608 bytes)"),
        "{}",
        berth.log()
    );
    assert_eq!(up.count("GET", &layer.digest), 2, "{:?}", up.requests());
    assert!(!cached(&berth.data_dir, &layer.digest));
    assert!(files(&pushed[0]).iter().all(|d| cached(&berth.data_dir, d)));
    assert!(!berth.log().contains("evicted least recently used blobs"));
}
