//! The cache lifecycle's cost: warm serving while eviction runs all the
//! time (a filler keeps pulling new blobs through a store capped at half
//! of them) against the same load with no cap; and a store of 1,000,000
//! blobs: start-up to listening, the background pass that accounts it,
//! and the memory that takes.

use crate::sys::{Quiet, status_bytes};
use crate::wrk;
use berth_testkit::Berth;
use berth_testkit::checks::{eventually_cached, pseudo_random};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::report::{Table, gibps, median, mib, ratio, secs};
use berth_testkit::upstream_toml;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const FILLER_BLOBS: u32 = 400;
/// Filler GETs per second, the same with and without the cap.
const FILLER_RATE: u64 = 20;
const FILLER_SIZE: u32 = 256 << 10;
const HOT_SMALL: u32 = 1 << 10;
const HOT_LARGE: u32 = 16 << 20;
const DURATION: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;
const MILLION: usize = 1_000_000;

/// Pulls the filler blobs round and round, [`FILLER_RATE`] a second,
/// until `stop`, counting GETs. Under a cap of half of them every GET
/// misses (a cycle defeats LRU), so each is a download, a commit and an
/// eviction; with no cap each is a warm read.
async fn fill(
    base: String,
    digests: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    gets: Arc<AtomicU64>,
) {
    let client = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1_000 / FILLER_RATE));
    while !stop.load(Ordering::Relaxed) {
        for digest in digests.iter() {
            tick.tick().await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let r = client
                .get(format!("{base}/v2/proj/app/blobs/{digest}"))
                .send()
                .await
                .expect("filler GET");
            assert_eq!(r.status(), 200, "filler GET");
            r.bytes().await.expect("filler body");
            gets.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// (req/s of the small hot blob, bytes/s of the large one, filler GETs,
/// eviction passes that removed something) for one berth config.
async fn serve_while_filling(
    config: &str,
    hot: &[(String, u32); 2],
    filler: &Arc<Vec<String>>,
) -> (f64, f64, u64, usize) {
    let berth = Berth::start(config);
    let base = berth.url();
    for (digest, size) in hot {
        let url = format!("{base}/v2/proj/app/blobs/{digest}");
        let r = reqwest::get(&url).await.expect("warm GET");
        assert_eq!(r.bytes().await.expect("warm body").len(), *size as usize);
        assert!(eventually_cached(&berth.data_dir, digest).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    let filler_task = tokio::spawn(fill(
        base.clone(),
        Arc::clone(filler),
        Arc::clone(&stop),
        Arc::clone(&gets),
    ));
    let small = format!("{base}/v2/proj/app/blobs/{}", hot[0].0);
    let large = format!("{base}/v2/proj/app/blobs/{}", hot[1].0);
    let mut rates = Vec::new();
    let mut throughputs = Vec::new();
    for _ in 0..ROUNDS {
        rates.push(
            wrk::run(&small, 1, 16, DURATION, &[])
                .await
                .requests_per_sec(),
        );
        throughputs.push(wrk::run(&large, 1, 4, DURATION, &[]).await.bytes_per_sec());
    }
    stop.store(true, Ordering::Relaxed);
    filler_task.await.expect("filler");
    let passes = berth
        .log()
        .matches("evicted least recently used blobs")
        .count();
    (
        median(rates),
        median(throughputs),
        gets.load(Ordering::Relaxed),
        passes,
    )
}

/// Warm serving with eviction running all the time / with no cap.
pub(crate) async fn eviction(table: &mut Table) {
    let fake = FakeUpstream::start().await;
    let blob = |size: u32, seed: u32| fake.blob(&pseudo_random(size, seed), Canned::default());
    let hot = [
        (blob(HOT_SMALL, 1), HOT_SMALL),
        (blob(HOT_LARGE, 2), HOT_LARGE),
    ];
    let filler: Arc<Vec<String>> = Arc::new(
        (0..FILLER_BLOBS)
            .map(|i| blob(FILLER_SIZE, 100 + i))
            .collect(),
    );
    let upstream = upstream_toml("fake.test", &fake.url, "default = true");
    let working_set = u64::from(FILLER_BLOBS) * u64::from(FILLER_SIZE);
    let cap = working_set / 2;
    let quiet = Quiet::begin();
    let (r_off, t_off, g_off, _) = serve_while_filling(&upstream, &hot, &filler).await;
    let capped = format!("[cache]\nmax_size = {cap}\n{upstream}");
    let (r_on, t_on, g_on, passes) = serve_while_filling(&capped, &hot, &filler).await;
    table.row(
        &quiet.mark("warm 1 KiB blob, 16 conn., wrk (req/s): eviction running / no cap"),
        format!("{r_on:.0}/s"),
        format!("{r_off:.0}/s"),
        ratio(r_on, r_off),
        ">= 0.9",
    );
    table.row(
        &quiet.mark("warm 16 MiB blob, 4 conn., wrk: eviction running / no cap"),
        gibps(t_on),
        gibps(t_off),
        ratio(t_on, t_off),
        ">= 0.9",
    );
    table.note(format!(
        "eviction running: a filler pulls {FILLER_BLOBS} blobs of {} KiB round and round, \
         {FILLER_RATE} a second, through a store capped at half of them ({}), so each of its \
         GETs is a download, a commit and an eviction, while wrk runs ({ROUNDS} rounds of {}s \
         each); filler GETs: {g_on} with the cap, {g_off} without (warm); passes that \
         evicted: {passes}",
        FILLER_SIZE >> 10,
        mib(cap as f64),
        DURATION.as_secs()
    ));
}

/// Writes `count` empty files named as blobs under `data`.
fn seed_empty(data: &Path, count: usize) {
    let root = data.join("blobs/sha256");
    for prefix in 0..=255u8 {
        std::fs::create_dir_all(root.join(hex::encode([prefix]))).expect("create blob dir");
    }
    for i in 0..count {
        let hex = berth_oci::Digest::of(&(i as u64).to_le_bytes()).hex();
        std::fs::File::create(root.join(&hex[..2]).join(&hex)).expect("create blob file");
    }
}

/// Start-up, accounting and its memory with 1,000,000 blobs.
pub(crate) async fn million(table: &mut Table) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let seeded = data.clone();
    tokio::task::spawn_blocking(move || seed_empty(&seeded, MILLION))
        .await
        .expect("seeding");
    let fake = FakeUpstream::start().await;
    let config = format!(
        "[cache]\nmax_size = \"100GiB\"\n{}",
        upstream_toml("fake.test", &fake.url, "default = true")
    );
    let quiet = Quiet::begin();
    let mut listening = Vec::new();
    let mut accounted = Vec::new();
    let mut held = Vec::new();
    let mut peak = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let berth = Berth::start_with_data(&config, &data);
        listening.push(start.elapsed().as_secs_f64());
        let deadline = Instant::now() + Duration::from_secs(300);
        while !berth.log().contains("cache store accounted") {
            assert!(
                Instant::now() < deadline,
                "no accounting pass: {}",
                berth.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        accounted.push(start.elapsed().as_secs_f64());
        held.push(status_bytes(berth.pid(), "VmRSS").unwrap_or(0) as f64);
        peak.push(status_bytes(berth.pid(), "VmHWM").unwrap_or(0) as f64);
    }
    let empty_dir = dir.path().join("empty");
    let berth = Berth::start_with_data(&config, &empty_dir);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = status_bytes(berth.pid(), "VmRSS").unwrap_or(0) as f64;
    drop(berth);
    let l = median(listening);
    table.row(
        &quiet.mark("start-up with 1,000,000 blobs and a size cap (spawn to listening)"),
        secs(l),
        "—".to_owned(),
        "—".to_owned(),
        "< 1 s",
    );
    let (a, h) = (median(accounted), median(held));
    table.row(
        &quiet.mark("memory held after accounting 1,000,000 blobs (RSS over an empty store)"),
        mib(h - base),
        "—".to_owned(),
        "—".to_owned(),
        "<= 64 MiB",
    );
    table.note(format!(
        "1,000,000 blobs: empty files named as blobs; the store is accounted by a pass in the \
         background, {a:.1} s after spawn (median of {ROUNDS}); RSS once accounted {}, on an \
         empty store {}; peak RSS during the pass (its list of blobs, freed after) {}",
        mib(h),
        mib(base),
        mib(median(peak))
    ));
}
