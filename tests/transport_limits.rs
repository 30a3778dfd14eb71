//! The serving transport under hostile clients: HTTP/2 streams that never
//! read, connections that never finish their headers or sit idle, and a
//! flood of connections. Each costs bounded memory and no thread, and a
//! normal client keeps being served.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::sha256;
use berth_testkit::{Berth, TestRegistry, upstream_toml};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A line of `/proc/<pid>/status`, as a number (`VmRSS` in KiB, `Threads`).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// The value of one sample in a Prometheus text.
fn sample_of(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// The value of one sample in berth's `/metrics`.
async fn metric(berth: &Berth, sample: &str) -> u64 {
    sample_of(&berth.metrics().await, sample)
}

/// The value of `sample` once it stops moving: three equal readings in a
/// row, 100 ms apart (at most 10 s).
async fn settled(berth: &Berth, sample: &str) -> u64 {
    let mut last = (metric(berth, sample).await, 0);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = metric(berth, sample).await;
        last = if now == last.0 {
            (now, last.1 + 1)
        } else {
            (now, 0)
        };
        if last.1 == 2 {
            return now;
        }
    }
    panic!("{sample} kept moving");
}

/// berth's `/metrics` on its admin listener, which has its own connection
/// table: readable while the public listener is at its cap. Kept alive,
/// so the reader holds one admin connection.
struct AdminMetrics {
    client: reqwest::Client,
    url: String,
}

impl AdminMetrics {
    async fn of(berth: &Berth) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: format!("{}/metrics", berth.admin_url().await),
        }
    }

    async fn get(&self, sample: &str) -> u64 {
        let text = self.client.get(&self.url).send().await.unwrap();
        sample_of(&text.text().await.unwrap(), sample)
    }

    /// Wait (at most 10 s) until `sample` is at least `at_least`.
    async fn reaches(&self, sample: &str, at_least: u64) {
        for _ in 0..500 {
            if self.get(sample).await >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{sample} never reached {at_least}");
    }
}

/// The config of a mirror of `up` with `server` as its `[server]` table
/// and metrics on an admin listener.
fn capped(up: &TestRegistry, server: &str) -> String {
    format!(
        "{}\n[server]\n{server}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        upstream_toml(
            "docker.io",
            &up.url(),
            "default = true\nauto_library = true"
        )
    )
}

/// Open an HTTP/2 (prior knowledge) connection and start `streams` GETs of
/// `path` whose bodies are never read: no window update is ever sent, so
/// each stream stalls once the first window is used up.
async fn stalled_h2_connection(
    addr: &str,
    path: &str,
    streams: usize,
) -> Vec<h2::client::ResponseFuture> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut pending = Vec::new();
    for _ in 0..streams {
        client = client.ready().await.unwrap();
        let request = http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        pending.push(response);
    }
    pending
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_http2_streams_cost_bounded_memory_and_no_threads() {
    let up = TestRegistry::start().await;
    let big = up.images().big.largest_blob().clone();
    let small = up.images().small.largest_blob().clone();
    let berth = Berth::hub(&up.url(), "");
    let addr = berth.url().trim_start_matches("http://").to_owned();
    let big_path = format!("/v2/library/big/blobs/{}", big.digest);
    // Warm the 48 MiB blob, as in the attack.
    let body = reqwest::get(format!("{}{big_path}", berth.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&body), big.digest);
    let rss_before = proc_status(berth.pid(), "VmRSS");

    // The attack, scaled for CI: 4 connections × 64 streams (the default
    // stream cap), each a GET of the cached blob, none read.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stalled_h2_connection(&addr, &big_path, 64).await);
    }
    // Let every stream get its headers and fill its first window.
    for conn in &mut held {
        for response in conn.iter_mut() {
            let answer = tokio::time::timeout(Duration::from_secs(20), response)
                .await
                .expect("headers of a stalled stream")
                .unwrap();
            assert_eq!(answer.status(), 200);
        }
    }
    // Every stream has filled what it may hold: berth sends no more.
    settled(&berth, "berth_served_bytes_total").await;

    // A normal HTTP/1 client is served in full meanwhile, warm and cold.
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    for (repo, blob) in [("big", &big), ("small", &small)] {
        let url = format!("{}/v2/library/{repo}/blobs/{}", berth.url(), blob.digest);
        let got = tokio::time::timeout(Duration::from_secs(30), async {
            http1.get(&url).send().await.unwrap().bytes().await.unwrap()
        })
        .await
        .expect("a normal pull completes while streams are stalled");
        assert_eq!(sha256(&got), blob.digest);
    }

    let rss = proc_status(berth.pid(), "VmRSS");
    let threads = proc_status(berth.pid(), "Threads");
    eprintln!(
        "stalled streams: RSS {rss_before} KiB before, {rss} KiB with 256 stalled streams; {threads} threads"
    );
    // Each connection may hold its 4 MiB body budget: 16 MiB for four.
    assert!(
        rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss} KiB for 256 stalled streams"
    );
    assert!(
        threads < 64,
        "{threads} threads: stalled streams must not hold threads"
    );
    drop(held);
}

/// A raw connection that sends `bytes` and then nothing; returns it.
async fn silent(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    tcp
}

/// Whether berth closed `tcp` (EOF or reset) within `limit`.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_connections_are_timed_out_and_shed_at_the_cap() {
    let up = TestRegistry::start().await;
    let berth = Berth::start(&capped(
        &up,
        "max_connections = 20\nmax_connections_per_ip = 20\nheader_read_timeout = \"2s\"\nidle_timeout = \"3s\"",
    ));
    let admin = AdminMetrics::of(&berth).await;
    let addr = berth.url().trim_start_matches("http://").to_owned();

    // Ten slowloris connections (headers never finished), ten idle ones.
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(silent(&addr, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: ").await);
    }
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(silent(&addr, b"").await);
    }
    // berth holds all twenty (and the admin reader's one).
    admin.reaches("berth_connections_open", 21).await;

    // The table is full, but a normal request is still served: the
    // longest-idle connection makes room.
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        reqwest::get(format!("{}/v2/", berth.url())),
    )
    .await
    .expect("served at the connection cap")
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        admin
            .get("berth_connections_closed_total{reason=\"shed\"}")
            .await
            >= 1
    );

    // Every slowloris connection is closed by the header-read timeout, and
    // every idle one by the idle timeout.
    for tcp in slow.iter_mut().chain(idle.iter_mut()) {
        assert!(
            closed_within(tcp, Duration::from_secs(8)).await,
            "berth kept a slow or idle connection open"
        );
    }
    assert!(
        admin
            .get("berth_connections_closed_total{reason=\"idle\"}")
            .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_connections_at_the_cap_turn_new_ones_away() {
    let up = TestRegistry::start().await;
    let big = up.images().big.largest_blob().clone();
    let berth = Berth::start(&capped(
        &up,
        "max_connections = 4\nmax_connections_per_ip = 4",
    ));
    let addr = berth.url().trim_start_matches("http://").to_owned();
    let path = format!("/v2/library/big/blobs/{}", big.digest);
    // Warm it, then hold four connections busy with responses nobody reads.
    let body = reqwest::get(format!("{}{path}", berth.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len() as u64, big.size);
    assert!(berth_testkit::checks::eventually_cached(&berth.data_dir, &big.digest).await);
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(silent(&addr, request.as_bytes()).await);
    }
    // berth answers all four (their first bytes are in).
    for tcp in &mut busy {
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let admin = AdminMetrics::of(&berth).await;
    let mut refused = TcpStream::connect(&addr).await.unwrap();
    refused
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    assert!(
        closed_within(&mut refused, Duration::from_secs(2)).await,
        "a fifth connection is closed at once"
    );
    assert_eq!(
        admin
            .get("berth_connections_refused_total{reason=\"per_ip\"}")
            .await
            + admin
                .get("berth_connections_refused_total{reason=\"total\"}")
                .await,
        1
    );
    drop(busy);
}
