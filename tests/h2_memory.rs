//! Memory that stalled HTTP/2 connections held goes back once they close:
//! clients that grant berth the widest flow-control windows, ask for a
//! large cached blob on many streams and never read make berth hold body
//! chunks; after they hang up, berth's resident memory must fall back near
//! where it was (glibc's malloc kept nearly all of it). While they stay
//! open, what they pin together stays within `[server] body_memory`,
//! however many there are.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, TestRegistry};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

const CONNECTIONS: usize = 32;
const STREAMS: u32 = 16;
/// Largest HTTP/2 window (2^31 - 1).
const WIDE: u32 = 0x7fff_ffff;

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Open connections according to berth's `/metrics` (counting the one
/// that asks).
async fn open_connections(berth: &Berth) -> u64 {
    berth
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("berth_connections_open ")?.parse().ok())
        .unwrap_or(0)
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The preface, SETTINGS with the widest stream window, a connection
/// WINDOW_UPDATE to the widest, and `STREAMS` GETs of `path`.
fn stalling_client(authority: &str, path: &str) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = 0x4u16.to_be_bytes().to_vec();
    settings.extend_from_slice(&WIDE.to_be_bytes());
    frame(&mut out, 0x4, 0, 0, &settings);
    frame(&mut out, 0x8, 0, 0, &(WIDE - 65_535).to_be_bytes());
    // :method GET, :scheme http (static table), :path and :authority as
    // literals with indexed names.
    let mut block = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, u8::try_from(authority.len()).unwrap()]);
    block.extend_from_slice(authority.as_bytes());
    for i in 0..STREAMS {
        frame(&mut out, 0x1, 0x5, 2 * i + 1, &block);
    }
    out
}

/// Polls `done` every 100 ms until it holds or `limit` passes.
async fn until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut done: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !done().await && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_held_by_stalled_http2_connections_is_returned_after_they_close() {
    let up = TestRegistry::start().await;
    let big = up.images().big.largest_blob().clone();
    let berth = Berth::hub(&up.url(), "");
    let path = format!("/v2/library/big/blobs/{}", big.digest);
    let body = reqwest::get(format!("{}{path}", berth.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len() as u64, big.size, "the blob is cached");
    let pid = berth.pid();
    let baseline = rss_kib(pid);

    let request = stalling_client(&berth.addr, &path);
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut tcp = TcpStream::connect(&berth.addr).await.unwrap();
        tcp.write_all(&request).await.unwrap();
        held.push(tcp);
    }
    // Every connection is open, and berth holds chunks for their streams.
    let mut peak = baseline;
    until(Duration::from_secs(30), || {
        peak = peak.max(rss_kib(pid));
        let (berth, peak) = (&berth, peak);
        async move {
            open_connections(berth).await >= CONNECTIONS as u64 && peak > baseline + 16 * 1024
        }
    })
    .await;
    eprintln!("RSS {baseline} KiB before, {peak} KiB with {CONNECTIONS} stalled connections");

    drop(held);
    until(Duration::from_secs(30), || async {
        open_connections(&berth).await <= 1
    })
    .await;
    assert!(
        open_connections(&berth).await <= 1,
        "the connections closed"
    );
    let target = baseline + (baseline / 10).max((peak - baseline) / 4);
    let mut after = rss_kib(pid);
    until(Duration::from_secs(30), || {
        after = rss_kib(pid);
        std::future::ready(after <= target)
    })
    .await;
    assert!(
        after <= target,
        "RSS {after} KiB 30 s after the connections closed: {baseline} KiB before, \
         {peak} KiB while they were open (at most {target} KiB allowed)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_http2_connections_together_hold_no_more_than_body_memory() {
    let up = TestRegistry::start().await;
    let big = up.images().big.largest_blob().clone();
    // Each connection may hold 4 MiB; all of them together, 16 MiB.
    let berth = Berth::hub(
        &up.url(),
        "[server]\nconnection_buffer = \"4MiB\"\nbody_memory = \"16MiB\"\n",
    );
    let path = format!("/v2/library/big/blobs/{}", big.digest);
    let body = reqwest::get(format!("{}{path}", berth.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len() as u64, big.size, "the blob is cached");
    let pid = berth.pid();
    let baseline = rss_kib(pid);
    let request = stalling_client(&berth.addr, &path);
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut tcp = TcpStream::connect(&berth.addr).await.unwrap();
        tcp.write_all(&request).await.unwrap();
        held.push(tcp);
    }
    until(Duration::from_secs(30), || async {
        open_connections(&berth).await >= CONNECTIONS as u64
    })
    .await;
    // Watched for a few seconds while every stream waits to be read:
    // 32 connections x 4 MiB would be 128 MiB; the listener allows 16 MiB,
    // plus what each connection needs to exist.
    let limit = baseline + 16 * 1024 + CONNECTIONS as u64 * 512;
    let mut peak = baseline;
    let watched = Instant::now();
    until(Duration::from_secs(5), || {
        peak = peak.max(rss_kib(pid));
        std::future::ready(peak > limit || watched.elapsed() >= Duration::from_secs(4))
    })
    .await;
    assert!(
        peak <= limit,
        "RSS {peak} KiB with {CONNECTIONS} stalled connections: {baseline} KiB before, at most {limit} KiB allowed"
    );
    drop(held);
}
