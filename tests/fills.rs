//! Blob fills seen from outside: how a delivered cold blob is logged, how a
//! second berth on the same data directory is kept out, and the limits a
//! fill keeps once its clients have left (share of upstream slots, size).

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::Layout;
use berth_testkit as testkit;

use berth_testkit::checks::{pseudo_random, sha256};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Serve `data` as a blob of `proj/app`, in `pieces` with `pause` between.
fn serve_blob(fake: &FakeUpstream, data: &[u8], pieces: usize, pause: Duration) -> String {
    let digest = sha256(data);
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(data.to_vec()),
            content_type: "application/octet-stream",
            pieces,
            pause,
            ..Canned::default()
        },
    );
    digest
}

/// The access log line of the request for `path`, once written.
async fn served_line(berth: &Berth, path: &str, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = berth.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" served") && l.contains(&format!("path={path}")))
            .collect();
        if let Some(line) = lines.get(nth) {
            return (*line).to_owned();
        }
        assert!(Instant::now() < deadline, "no log line for {path}:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_blobs_are_logged_complete() {
    let fake = FakeUpstream::start().await;
    let data = pseudo_random(3_000_000, 13);
    let digest = serve_blob(&fake, &data, 12, Duration::from_millis(20));
    let berth = Berth::start(&upstream_toml("fake.test", &fake.url, "default = true"));
    let path = format!("/v2/proj/app/blobs/{digest}");
    let plain = reqwest::Client::new();
    for (nth, cache) in [(0, "MISS"), (1, "HIT")] {
        let r = plain
            .get(format!("{}{path}", berth.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-cache"], cache);
        assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
        let line = served_line(&berth, &path, nth).await;
        assert!(line.contains("complete=true"), "{cache}: {line}");
        assert!(line.contains(&format!("bytes={}", data.len())), "{line}");
        assert!(testkit::checks::eventually_cached(&berth.data_dir, &digest).await);
    }

    // The same over HTTP/2, where bodies are streamed.
    let other = pseudo_random(2_000_000, 14);
    let digest = serve_blob(&fake, &other, 8, Duration::from_millis(20));
    let path = format!("/v2/proj/app/blobs/{digest}");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(format!("{}{path}", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    let line = served_line(&berth, &path, 0).await;
    assert!(line.contains("complete=true"), "{line}");

    // A client that leaves early is logged incomplete.
    let r = plain
        .get(format!("{}{path}", berth.url()))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 100);
    let line = served_line(&berth, &path, 1).await;
    assert!(line.contains("complete=true"), "a whole range: {line}");
    let slow = pseudo_random(2_000_000, 15);
    let digest = serve_blob(&fake, &slow, 10, Duration::from_millis(200));
    let path = format!("/v2/proj/app/blobs/{digest}");
    let mut r = plain
        .get(format!("{}{path}", berth.url()))
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(r);
    let line = served_line(&berth, &path, 0).await;
    assert!(line.contains("complete=false"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_berth_on_the_same_data_dir_exits_and_leaves_the_first_alone() {
    let fake = FakeUpstream::start().await;
    let data = pseudo_random(3_000_000, 21);
    let digest = serve_blob(&fake, &data, 15, Duration::from_millis(100));
    let config = upstream_toml("fake.test", &fake.url, "default = true");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let first = Berth::start_with_data(&config, &data_dir);
    let url = format!("{}/v2/proj/app/blobs/{digest}", first.url());
    let response = reqwest::get(&url).await.unwrap();
    let spools = || {
        std::fs::read_dir(Layout::new(&data_dir).tmp())
            .unwrap()
            .count()
    };
    assert_eq!(spools(), 1, "the cold blob is being spooled");

    let started = Instant::now();
    let (status, stderr) =
        testkit::berth::serve_until_exit(&config, &data_dir, Duration::from_secs(10))
            .expect("a second berth on the same data_dir keeps running");
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert_eq!(spools(), 1, "the second berth swept the first one's spool");

    // Read-only verification works beside the running server.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cache", "verify", "--config"])
        .arg(first.config_path())
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");

    assert_eq!(sha256(&response.bytes().await.unwrap()), digest);
    assert!(testkit::checks::eventually_cached(&data_dir, &digest).await);
    let again = reqwest::get(&url).await.unwrap();
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(sha256(&again.bytes().await.unwrap()), digest);
    assert!(
        !first.log().contains("could not be committed"),
        "{}",
        first.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_blob_body_stops_at_max_blob_size_after_its_client_left() {
    let fake = FakeUpstream::start().await;
    let digest = sha256(b"no endless body hashes to this");
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(vec![7u8; 256 << 10]),
            content_type: "application/octet-stream",
            endless: true,
            pause: Duration::from_millis(2),
            ..Canned::default()
        },
    );
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nmax_blob_size = \"8MiB\"",
    ));
    let mut r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.chunk().await;
    drop(r);
    let tmp = Layout::new(&berth.data_dir).tmp();
    let spooled = || -> Vec<u64> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .collect()
    };
    let mut largest = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        largest = spooled().into_iter().fold(largest, u64::max);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(largest <= 8 << 20, "spooled {} MiB", largest >> 20);
    assert!(spooled().is_empty(), "the stopped fill left its spool");
    assert!(berth.log().contains("max_blob_size"), "{}", berth.log());
    assert!(!testkit::checks::cached(&berth.data_dir, &digest));
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_slow_fills_leave_room_for_other_requests() {
    let fake = FakeUpstream::start().await;
    fake.manifest("latest");
    let blobs: Vec<String> = (0..4)
        .map(|seed| {
            let data = pseudo_random(1_000_000, 100 + seed);
            serve_blob(&fake, &data, 20, Duration::from_millis(250))
        })
        .collect();
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nmax_concurrent = 4\nqueue_timeout = \"1s\"\nunattended_fills = 1",
    ));
    // Four clients start slow downloads and leave: every slot is taken.
    for digest in &blobs {
        let mut r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.chunk().await;
    }
    // All but one stop once their clients are gone...
    let deadline = Instant::now() + Duration::from_secs(10);
    while berth.log().matches("blob download stopped").count() < 3 {
        assert!(Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and other requests to the upstream get a slot.
    for _ in 0..3 {
        let r = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The one within the share goes on, and is cached.
    let deadline = Instant::now() + Duration::from_secs(15);
    let cached = || {
        blobs
            .iter()
            .filter(|d| testkit::checks::cached(&berth.data_dir, d))
            .count()
    };
    while cached() == 0 {
        assert!(Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cached(), 1);
    assert!(berth.log().contains("unattended_fills"), "{}", berth.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_body_of_unknown_length_stops_after_a_bounded_number_of_bytes() {
    let fake = FakeUpstream::start().await;
    let digest = sha256(b"no endless body hashes to this either");
    // Fast (about 128 MiB/s) and without Content-Length: no deadline that
    // grows with its size would ever catch it.
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(vec![7u8; 256 << 10]),
            content_type: "application/octet-stream",
            endless: true,
            pause: Duration::from_millis(2),
            ..Canned::default()
        },
    );
    let berth = Berth::start(&upstream_toml("fake.test", &fake.url, "default = true"));
    let mut r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.chunk().await;
    drop(r);
    let tmp = Layout::new(&berth.data_dir).tmp();
    let spooled = || -> u64 {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    let mut largest = 0;
    let until = Instant::now() + Duration::from_secs(30);
    while !berth.log().contains("body of unknown length took") {
        assert!(Instant::now() < until, "the fill went on:\n{}", berth.log());
        largest = largest.max(spooled());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 128 MiB past the point the client left, and what was in flight.
    assert!(largest <= 160 << 20, "spooled {} MiB", largest >> 20);
    assert!(!testkit::checks::cached(&berth.data_dir, &digest));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_resizes_the_share_of_unattended_fills() {
    let fake = FakeUpstream::start().await;
    let pause = Duration::from_millis(100);
    let first = serve_blob(&fake, &pseudo_random(1_000_000, 200), 20, pause);
    let second = serve_blob(&fake, &pseudo_random(1_000_000, 201), 20, pause);
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nunattended_fills = 0",
    ));
    let abandon = async |digest: &str| {
        let mut r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.chunk().await;
    };
    let wait = async |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done() {
            assert!(Instant::now() < deadline, "{what}:\n{}", berth.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // With no share, a download its client left stops.
    abandon(&first).await;
    wait("the first download went on", &|| {
        berth.log().contains("blob download stopped")
    })
    .await;
    // A share of one, reloaded: the next one left alone goes on.
    let path = berth.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("unattended_fills = 0", "unattended_fills = 1"),
    )
    .unwrap();
    wait("the file was not reloaded", &|| {
        berth.log().contains("configuration reloaded")
    })
    .await;
    abandon(&second).await;
    wait("the second download did not finish", &|| {
        testkit::checks::cached(&berth.data_dir, &second)
    })
    .await;
    assert!(!testkit::checks::cached(&berth.data_dir, &first));
    assert_eq!(berth.log().matches("blob download stopped").count(), 1);
}
