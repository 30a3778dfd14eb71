//! Comparison benchmark: berth against its references, all started here on
//! 127.0.0.1 in one run on the same images, printed as one markdown table of
//! ratios (absolute numbers on a shared machine are noise):
//!
//! - direct upstream: distribution 2.8 with token auth behind the tests'
//!   request-counting tap (upstream requests and bytes are counted there,
//!   never from berth's own metrics);
//! - distribution 2.8 in proxy mode in front of that upstream (`proxy`);
//! - nginx with `sendfile on` serving the same blob files (`nginx`);
//! - berth itself with no size cap, for the cost of eviction (`lifecycle`);
//! - nginx over HTTPS with the same certificate, and berth's plain listener
//!   (`https`);
//! - berth with no access rules or limits, for the cost of admission
//!   (`access`);
//! - berth on the S3 backend against berth on local disk and against the
//!   S3 server's own GET (`s3`, s3s-fs started here);
//! - berth replicas joined through Redis (`cluster`, redis-server started
//!   here).
//!
//! Load comes from wrk, skopeo, curl and in-process reqwest clients. Run it
//! with `bench/run compare` (a release build).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod big_image;
mod cluster;
mod cold;
mod h2_memory;
mod https;
mod lifecycle;
mod memory;
mod nginx;
mod proxy;
mod sink;
mod storage;
mod sys;
mod throughput;
mod wrk;

use berth_testkit::report::Table;
use berth_testkit::{Berth, TestRegistry, upstream_toml};
use big_image::BigImage;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// What every measure shares.
pub(crate) struct Ctx {
    pub(crate) up: TestRegistry,
    /// The 1 GiB single-layer image, pushed into `up`.
    pub(crate) gib: BigImage,
    /// berth's config: docker.io at the upstream, tags trusted for 1 h.
    pub(crate) hub: String,
    pub(crate) client: reqwest::Client,
}

impl Ctx {
    /// A fresh berth (empty cache) in front of the upstream.
    pub(crate) fn berth(&self) -> Berth {
        Berth::start(&self.hub)
    }
}

/// GETs `url` and discards the body: (status, body bytes, time to last byte).
pub(crate) async fn get_all(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, u64, Duration) {
    let start = Instant::now();
    let mut req = client.get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let mut body = response.bytes_stream();
    let mut n = 0;
    while let Some(chunk) = body.next().await {
        n += chunk
            .unwrap_or_else(|e| panic!("GET {url}: body: {e}"))
            .len() as u64;
    }
    (status, n, start.elapsed())
}

/// GETs `url` until a GET reaches upstream no more (the server has the
/// object locally), checking every answer is 200 with `size` bytes.
pub(crate) async fn warm(ctx: &Ctx, url: &str, headers: &[(&str, &str)], size: u64) {
    for _ in 0..40 {
        let before = ctx.up.requests().len();
        let (status, n, _) = get_all(&ctx.client, url, headers).await;
        assert_eq!((status, n), (200, size), "warming {url}");
        if ctx.up.requests().len() == before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{url} still goes upstream after 40 GETs");
}

/// Runs one measure, logging its name and duration on stderr.
macro_rules! step {
    ($name:expr, $e:expr) => {{
        let start = Instant::now();
        eprintln!("bench: {} ...", $name);
        let out = $e;
        eprintln!("bench: {} done in {:.0?}", $name, start.elapsed());
        out
    }};
}

/// Whether `BENCH_ONLY` (comma-separated step names: throughput,
/// manifests, small, cold, concurrent, tag, rss, startup, access,
/// https, eviction, million, h2mem, s3, cluster) is unset or names `step`.
fn selected(step: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == step))
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    sys::start_watcher();
    let up = step!("starting the upstream", TestRegistry::start().await);
    let gib = step!("pushing the 1 GiB image", big_image::push(&up).await);
    let hub = upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true\ntag_ttl = \"1h\"",
    );
    let ctx = Ctx {
        up,
        gib,
        hub,
        client: reqwest::Client::new(),
    };
    let mut t = Table::new();
    if selected("throughput") {
        step!(
            "warm blob throughput",
            throughput::blobs(&ctx, &mut t).await
        );
    }
    if selected("manifests") {
        step!(
            "cached manifests",
            throughput::manifests(&ctx, &mut t).await
        );
    }
    if selected("small") {
        step!(
            "cached small blobs",
            throughput::small_blobs(&ctx, &mut t).await
        );
    }
    let mut dist = None;
    if selected("cold") {
        dist = Some(step!("cold pulls", cold::cold_pulls(&ctx, &mut t).await));
    }
    if selected("concurrent") {
        step!("32 cold clients", cold::concurrent_cold(&ctx, &mut t).await);
    }
    if selected("tag") {
        step!("warm pull by tag", cold::warm_by_tag(&ctx, &mut t).await);
    }
    if selected("rss") {
        step!(
            "peak RSS",
            memory::peak_rss(&ctx, &mut t, dist.take()).await
        );
    }
    drop(dist);
    if selected("startup") {
        step!("start-up", memory::startup(&ctx, &mut t).await);
    }
    if selected("access") {
        step!("admission", access::access(&ctx, &mut t).await);
    }
    if selected("https") {
        step!("HTTPS", https::https(&ctx, &mut t).await);
    }
    if selected("eviction") {
        step!(
            "warm serving with eviction running",
            lifecycle::eviction(&mut t).await
        );
    }
    if selected("million") {
        step!("1,000,000 blobs", lifecycle::million(&mut t).await);
    }
    if selected("s3") {
        step!("S3 backend", storage::s3(&ctx, &mut t).await);
    }
    if selected("cluster") {
        step!("cluster", cluster::cluster(&ctx, &mut t).await);
    }
    if selected("h2mem") {
        step!(
            "stalled HTTP/2 connections",
            h2_memory::h2_memory(&ctx, &mut t).await
        );
    }

    t.note(format!(
        "1 GiB image: one layer of {} bytes; 48 MiB blob: the test suite's `library/big` layer; \
         upstream counts and bytes come from the tap in front of the upstream.",
        ctx.gib.layer.1
    ));
    if sys::any_flagged() {
        t.note(
            "† a compiler (rustc, cc or ld) was running during this measure: the row is skewed."
                .to_owned(),
        );
    }
    t.note(format!(
        "whole run: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    t.print("berth vs distribution proxy and nginx (127.0.0.1)");
}
