//! Load and soak: 1,000 concurrent client connections, then a soak of
//! mixed warm and cold pulls (10 minutes by default, `SOAK_SECS` to change)
//! that samples berth's RSS and open file descriptors, to show they stay
//! flat. Not part of CI; run with `bench/run soak`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::sha256;
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, TestRegistry, upstream_toml};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 1000;
const WORKERS: usize = 32;
const COLD_BLOBS: usize = 4000;

fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

#[tokio::main]
async fn main() {
    raise_fd_limit();
    let soak = Duration::from_secs(
        std::env::var("SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let up = TestRegistry::start().await;
    let fake = FakeUpstream::start().await;
    let cold: Vec<String> = (0..COLD_BLOBS)
        .map(|i| {
            let data: Vec<u8> = (0..(256u32 << 10))
                .map(|j| (j.wrapping_mul(2_654_435_761) ^ i as u32) as u8)
                .collect();
            let digest = sha256(&data);
            fake.route(
                &format!("cold/blob/blobs/{digest}"),
                Canned {
                    body: Bytes::from(data),
                    content_type: "application/octet-stream",
                    ..Canned::default()
                },
            );
            digest
        })
        .collect();
    let config = format!(
        "{}{}",
        upstream_toml(
            "docker.io",
            &up.url(),
            "default = true\nauto_library = true\ntag_ttl = \"1h\"\nmax_concurrent = 256"
        ),
        upstream_toml("fake.test", &fake.url, "max_concurrent = 256")
    );
    let berth = Berth::start(&config);
    let pid = berth.pid();
    let small = &up.images().small;
    let manifest_url = format!(
        "{}/v2/library/small/manifests/{}",
        berth.url(),
        small.digest
    );
    let blob_url = format!(
        "{}/v2/library/small/blobs/{}",
        berth.url(),
        small.largest_blob().digest
    );
    assert_eq!(reqwest::get(&manifest_url).await.unwrap().status(), 200);
    assert_eq!(
        reqwest::get(&blob_url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len() as u64,
        small.largest_blob().size
    );

    // 1,000 connections at once, each its own client and socket.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let url = if i % 2 == 0 {
                manifest_url.clone()
            } else {
                blob_url.clone()
            };
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    _ => false,
                }
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        if !t.await.unwrap() {
            failed += 1;
        }
    }
    println!(
        "\n{CONNECTIONS} concurrent connections: {failed} failed, {:.2} s, berth RSS {} MiB, fds {}",
        started.elapsed().as_secs_f64(),
        proc_status(pid, "VmRSS:") / 1024,
        open_fds(pid)
    );

    // Soak: warm manifests and blobs, and a stream of cold blobs.
    let next_cold = Arc::new(AtomicUsize::new(0));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + soak;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let client = reqwest::Client::new();
            let (manifest_url, blob_url, base) =
                (manifest_url.clone(), blob_url.clone(), berth.url());
            let (cold, next_cold, ok, errors) = (
                cold.clone(),
                Arc::clone(&next_cold),
                Arc::clone(&ok),
                Arc::clone(&errors),
            );
            tokio::spawn(async move {
                let mut n = 0usize;
                while Instant::now() < deadline {
                    n += 1;
                    let url = match (n + w) % 5 {
                        0 => {
                            let i = next_cold.fetch_add(1, Ordering::Relaxed) % COLD_BLOBS;
                            format!("{base}/v2/fake.test/cold/blob/blobs/{}", cold[i])
                        }
                        1 | 2 => blob_url.clone(),
                        _ => manifest_url.clone(),
                    };
                    let good = match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if good { &ok } else { &errors }.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    println!(
        "\nsoak for {} s with {WORKERS} clients (1 in 5 requests a cold blob)\n",
        soak.as_secs()
    );
    println!("| t (s) | requests ok | errors | RSS (MiB) | open fds |");
    println!("|---|---|---|---|---|");
    let sample_every = Duration::from_secs((soak.as_secs() / 20).max(5));
    let soak_start = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(
            sample_every.min(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(10),
            ),
        )
        .await;
        println!(
            "| {} | {} | {} | {} | {} |",
            soak_start.elapsed().as_secs(),
            ok.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
            proc_status(pid, "VmRSS:") / 1024,
            open_fds(pid)
        );
    }
    for w in workers {
        w.await.unwrap();
    }
    println!(
        "\npeak RSS {} MiB; errors {}",
        proc_status(pid, "VmHWM:") / 1024,
        errors.load(Ordering::Relaxed)
    );
}
