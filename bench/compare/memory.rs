//! berth's footprint: peak RSS (VmHWM of the berth process) while 16
//! clients pull the 1 GiB layer, cold and then warm; and start-up time on a
//! data dir holding 100,000 cached blobs, plus what its first request costs.

use crate::proxy::DistProxy;
use crate::sys::{Quiet, RssSampler, cpu_seconds, status_bytes};
use crate::{Ctx, get_all};
use berth_testkit::Berth;
use berth_testkit::report::{Table, median, mib, ratio, secs};
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const BLOBS: usize = 100_000;
const ROUNDS: usize = 3;

/// 16 concurrent GETs of `url`; the aggregate rate in GiB/s.
async fn sixteen(ctx: &Ctx, url: &str, size: u64) -> f64 {
    let start = Instant::now();
    let clients = (0..CLIENTS).map(|_| get_all(&ctx.client, url, &[]));
    for (status, n, _) in futures_util::future::join_all(clients).await {
        assert_eq!((status, n), (200, size), "GET {url}");
    }
    (CLIENTS as u64 * size) as f64 / start.elapsed().as_secs_f64() / f64::from(1u32 << 30)
}

/// Peak RSS of berth with 16 clients of the 1 GiB layer; `dist` (holding
/// the layer from the cold pulls, else warmed here) serves the same warm
/// load as the reference.
pub(crate) async fn peak_rss(ctx: &Ctx, table: &mut Table, dist: Option<DistProxy>) {
    let (path, size) = (ctx.gib.layer_path(), ctx.gib.layer.1);
    let quiet = Quiet::begin();
    let mut berth = ctx.berth();
    let idle = status_bytes(berth.pid(), "VmHWM").unwrap_or(0) as f64;
    ctx.up.reset_requests();
    let cold_rate = sixteen(ctx, &format!("{}{path}", berth.url()), size).await;
    let cold = status_bytes(berth.pid(), "VmHWM").unwrap_or(0) as f64;
    let cold_gets = ctx
        .up
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.ends_with(&ctx.gib.layer.0))
        .count();

    // Same data dir, new process: a clean high-water mark for the warm load.
    let _keep = berth.keep_data();
    let data_dir = berth.data_dir.clone();
    drop(berth);
    let berth = Berth::start_with_data(&ctx.hub, &data_dir);
    ctx.up.reset_requests();
    let warm_rate = sixteen(ctx, &format!("{}{path}", berth.url()), size).await;
    let warm = status_bytes(berth.pid(), "VmHWM").unwrap_or(0) as f64;
    let warm_upstream = ctx.up.requests().len();
    drop(berth);

    let dist = match dist {
        Some(d) => d,
        None => {
            let d = DistProxy::start(&ctx.up.url());
            crate::warm(ctx, &format!("{}{path}", d.url()), &[], size).await;
            d
        }
    };
    let sampler = RssSampler::start(dist.pid());
    let dist_rate = sixteen(ctx, &format!("{}{path}", dist.url()), size).await;
    let dist_peak = sampler.peak() as f64;

    table.row(
        &quiet.mark("peak RSS (VmHWM) while 16 clients pull the 1 GiB blob, cold"),
        mib(cold),
        "—".to_owned(),
        "—".to_owned(),
        "<= 64 MiB",
    );
    table.row(
        &quiet.mark(
            "peak RSS (VmHWM) while 16 clients pull the 1 GiB blob, warm: berth / distribution",
        ),
        mib(warm),
        mib(dist_peak),
        ratio(warm, dist_peak),
        "<= 64 MiB",
    );
    table.note(format!(
        "16 clients × 1 GiB (in-process reqwest): berth idle VmHWM {}; cold: {cold_rate:.2} GiB/s \
         aggregate, {cold_gets} upstream GET of the layer answered 200; warm: {warm_rate:.2} GiB/s, \
         {warm_upstream} upstream requests; distribution warm: {dist_rate:.2} GiB/s, its \
         VmRSS sampled every 50 ms (its VmHWM would include its earlier cold pull)",
        mib(idle)
    ));
}

/// Writes `count` content-addressed blobs (each hashing to its name) into
/// `<data>/blobs/sha256/<2 hex>/<64 hex>`; returns one digest.
fn seed_blobs(data: &Path, count: usize) -> String {
    let root = data.join("blobs/sha256");
    for prefix in 0..=255u8 {
        std::fs::create_dir_all(root.join(hex::encode([prefix]))).expect("create blob dir");
    }
    let mut sample = String::new();
    for i in 0..count {
        let body = format!("berth bench blob {i}\n");
        let hex = berth_oci::Digest::of(body.as_bytes()).hex();
        std::fs::write(root.join(&hex[..2]).join(&hex), body).expect("write blob");
        if i == count / 2 {
            sample = format!("sha256:{hex}");
        }
    }
    sample
}

/// Start-up time (spawn to the "listening" line) with 100,000 cached
/// blobs against an empty data dir, and the first request after it.
pub(crate) async fn startup(ctx: &Ctx, table: &mut Table) {
    let dir = tempfile::tempdir().expect("temp dir");
    let full = dir.path().join("full");
    let sample = tokio::task::spawn_blocking({
        let full = full.clone();
        move || seed_blobs(&full, BLOBS)
    })
    .await
    .expect("seeding blobs");
    let quiet = Quiet::begin();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut first = None;
    for round in 0..ROUNDS {
        let start = Instant::now();
        let berth = Berth::start_with_data(&ctx.hub, &full);
        with.push(start.elapsed().as_secs_f64());
        if round == 0 {
            let cpu = cpu_seconds(berth.pid()).unwrap_or(0.0);
            ctx.up.reset_requests();
            let url = format!("{}/v2/library/startup/blobs/{sample}", berth.url());
            let t = Instant::now();
            let response = ctx
                .client
                .head(&url)
                .send()
                .await
                .expect("HEAD cached blob");
            let head = t.elapsed();
            assert_eq!(response.status(), 200, "HEAD {url}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let idle_cpu = cpu_seconds(berth.pid()).unwrap_or(0.0) - cpu;
            first = Some((head, ctx.up.requests().len(), cpu, idle_cpu));
        }
        drop(berth);
        let empty = dir.path().join(format!("empty-{round}"));
        let start = Instant::now();
        let berth = Berth::start_with_data(&ctx.hub, &empty);
        without.push(start.elapsed().as_secs_f64());
        drop(berth);
    }
    let (w, wo) = (median(with), median(without));
    table.row(
        &quiet.mark(
            "start-up with 100,000 cached blobs (spawn to listening): berth / empty data dir",
        ),
        secs(w),
        secs(wo),
        ratio(w, wo),
        "< 1 s",
    );
    let (head, upstream, cpu, idle_cpu) = first.expect("first round ran");
    table.row(
        &quiet.mark("first request after that start-up: HEAD of a cached blob"),
        format!("{:.1} ms", head.as_secs_f64() * 1e3),
        "—".to_owned(),
        "—".to_owned(),
        "no full scan on the request path",
    );
    table.note(format!(
        "start-up: median of {ROUNDS}; the {BLOBS} blobs are small content-addressed files \
         (each hashes to its name) in the page cache; berth CPU time at listening {cpu:.2} s, \
         then {idle_cpu:.2} s over the 2 s after its first request; {upstream} upstream \
         requests"
    ));
}
