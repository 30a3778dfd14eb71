//! Warm serving: the 48 MiB blob with wrk at 1 and 16 connections, with
//! curl on one connection and with a discarding client at 1 and 16
//! connections (berth vs nginx sendfile vs distribution proxy),
//! a cached manifest by digest at 64 connections with wrk (berth vs
//! distribution proxy), and a small cached blob at 64 connections with wrk
//! (berth vs nginx and distribution). Servers take turns within each round;
//! the figure is the median over rounds.

use crate::nginx::Nginx;
use crate::proxy::DistProxy;
use crate::sys::{Quiet, status_bytes};
use crate::{Ctx, sink, warm, wrk};
use berth_testkit::report::{Table, gibps, median, mib, ratio};
use std::time::Duration;

const ROUNDS: usize = 3;
const DURATION: Duration = Duration::from_secs(5);

/// Warm 48 MiB blob throughput, 1 and 16 connections.
pub(crate) async fn blobs(ctx: &Ctx, table: &mut Table) {
    let images = ctx.up.images();
    let big = &images.big;
    let blob = big.largest_blob();
    let path = big.blob_path(blob);
    let file = images.blob_file(&blob.digest);
    let nginx = Nginx::start(&[(path.clone(), file.as_path())]);
    let berth = ctx.berth();
    let dist = DistProxy::start(&ctx.up.url());
    let bases = [nginx.url(), berth.url(), dist.url()];
    for base in &bases {
        warm(ctx, &format!("{base}{path}"), &[], blob.size).await;
    }

    // results[load][server] = bytes/s per round.
    let loads = [
        Load::Wrk(1, 1),
        Load::Wrk(2, 16),
        Load::Curl,
        Load::Sink(1),
        Load::Sink(16),
    ];
    let mut results = vec![vec![Vec::new(); bases.len()]; loads.len()];
    let mut errors = 0;
    let quiet = Quiet::begin();
    ctx.up.reset_requests();
    for _ in 0..ROUNDS {
        for (li, load) in loads.iter().enumerate() {
            for (si, base) in bases.iter().enumerate() {
                let url = format!("{base}{path}");
                let rate = match load {
                    Load::Wrk(threads, conns) => {
                        let w = wrk::run(&url, *threads, *conns, DURATION, &[]).await;
                        errors += w.errors;
                        w.bytes_per_sec()
                    }
                    Load::Curl => curl_rate(&url, blob.size, CURL_GETS, &[]).await,
                    Load::Sink(conns) => sink::rate(&url, blob.size, *conns, DURATION).await,
                };
                results[li][si].push(rate);
            }
        }
    }
    let upstream = ctx.up.requests().len();
    for (li, load) in loads.iter().enumerate() {
        let [n, b, d] = [0, 1, 2].map(|si| median(results[li][si].clone()));
        let what = match load {
            Load::Wrk(_, conns) => format!("warm 48 MiB blob, {conns} conn., wrk"),
            Load::Curl => "warm 48 MiB blob, 1 conn., curl".to_owned(),
            Load::Sink(conns) => format!("warm 48 MiB blob, {conns} conn., discarding client"),
        };
        table.row(
            &quiet.mark(&format!("{what}: berth / nginx sendfile")),
            gibps(b),
            gibps(n),
            ratio(b, n),
            ">= 1.0",
        );
        table.row(
            &quiet.mark(&format!("{what}: berth / distribution proxy")),
            gibps(b),
            gibps(d),
            ratio(b, d),
            ">= 1.5",
        );
    }
    table.note(format!(
        "warm blob: median of {ROUNDS} rounds per server and load: {}s of wrk -t1 -c1 and -t2 \
         -c16 (wrk reads 8 KiB at a time and shares the 2 cores: it can be the bottleneck), \
         and one curl fetching the blob {CURL_GETS} times over one connection, and the \
         discarding client (keep-alive GETs whose bodies the kernel drops with MSG_TRUNC: no \
         copy on the client side, so the server's own cost shows) at 1 and 16 connections; \
         {errors} wrk errors; {upstream} upstream requests during the runs; berth VmHWM afterwards {}",
        DURATION.as_secs(),
        mib(status_bytes(berth.pid(), "VmHWM").unwrap_or(0) as f64)
    ));
}

/// A load generator for the warm blob.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// wrk with (threads, connections).
    Wrk(u32, u32),
    /// One curl, one connection, [`CURL_GETS`] transfers.
    Curl,
    /// The discarding client with this many connections.
    Sink(usize),
}

/// Transfers per curl run.
pub(crate) const CURL_GETS: usize = 20;

/// One curl process GETting `url` `n` times over one connection into
/// /dev/null; bytes/s over the sum of curl's per-transfer times.
pub(crate) async fn curl_rate(url: &str, size: u64, n: usize, options: &[&str]) -> f64 {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-w", "%{http_code} %{size_download} %{time_total}\n"]);
    cmd.args(options);
    for _ in 0..n {
        cmd.args(["-o", "/dev/null", url]);
    }
    let out = cmd.output().await.expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seconds = 0.0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields.get(..2),
            Some(&["200", size.to_string().as_str()][..]),
            "curl {url}: {text}"
        );
        seconds += fields[2].parse::<f64>().expect("curl time_total");
    }
    assert_eq!(text.lines().count(), n, "curl {url}: {text}");
    (n as u64 * size) as f64 / seconds
}

/// Requests/s of wrk -t2 -c64 on `path` at each base URL, median over
/// [`ROUNDS`], with the upstream requests each server made meanwhile and
/// the wrk errors in all.
async fn request_rates(
    ctx: &Ctx,
    bases: &[String],
    path: &str,
    headers: &[&str],
) -> (Vec<f64>, Vec<usize>, u64) {
    let mut results = vec![Vec::new(); bases.len()];
    let mut upstream = vec![0; bases.len()];
    let mut errors = 0;
    for _ in 0..ROUNDS {
        for (si, base) in bases.iter().enumerate() {
            let before = ctx.up.requests().len();
            let w = wrk::run(&format!("{base}{path}"), 2, 64, DURATION, headers).await;
            upstream[si] += ctx.up.requests().len() - before;
            errors += w.errors;
            results[si].push(w.requests_per_sec());
        }
    }
    let medians = results.into_iter().map(median).collect();
    (medians, upstream, errors)
}

/// Cached manifest by digest, requests/s at 64 connections.
pub(crate) async fn manifests(ctx: &Ctx, table: &mut Table) {
    let small = &ctx.up.images().small;
    let path = format!("/v2/{}/manifests/{}", small.repository, small.digest);
    let accept = small.media_type.as_str();
    let berth = ctx.berth();
    let dist = DistProxy::start(&ctx.up.url());
    let bases = [berth.url(), dist.url()];
    for base in &bases {
        let url = format!("{base}{path}");
        warm(
            ctx,
            &url,
            &[("Accept", accept)],
            small.manifest.len() as u64,
        )
        .await;
    }
    let header = format!("Accept: {accept}");
    let quiet = Quiet::begin();
    let (rates, upstream, errors) = request_rates(ctx, &bases, &path, &[&header]).await;
    let (b, d) = (rates[0], rates[1]);
    table.row(
        &quiet.mark("cached manifest by digest, 64 conn., wrk (req/s): berth / distribution proxy"),
        format!("{b:.0}/s"),
        format!("{d:.0}/s"),
        ratio(b, d),
        ">= 2",
    );
    table.note(format!(
        "manifest by digest: median of {ROUNDS} rounds of {}s wrk -t2 -c64 with `{header}`; \
         {errors} wrk errors; upstream requests during the runs: berth {}, distribution {}",
        DURATION.as_secs(),
        upstream[0],
        upstream[1]
    ));
}

/// A small cached blob (the image config), requests/s at 64 connections:
/// berth against nginx and distribution.
pub(crate) async fn small_blobs(ctx: &Ctx, table: &mut Table) {
    let images = ctx.up.images();
    let small = &images.small;
    let blob = small
        .blobs
        .iter()
        .min_by_key(|b| b.size)
        .expect("small has blobs");
    let path = small.blob_path(blob);
    let file = images.blob_file(&blob.digest);
    let nginx = Nginx::start(&[(path.clone(), file.as_path())]);
    let berth = ctx.berth();
    let dist = DistProxy::start(&ctx.up.url());
    let bases = [berth.url(), nginx.url(), dist.url()];
    for base in &bases {
        warm(ctx, &format!("{base}{path}"), &[], blob.size).await;
    }
    let quiet = Quiet::begin();
    let (rates, upstream, errors) = request_rates(ctx, &bases, &path, &[]).await;
    let (b, n, d) = (rates[0], rates[1], rates[2]);
    let what = format!("cached {} B blob, 64 conn., wrk (req/s)", blob.size);
    for (reference, r) in [("nginx sendfile", n), ("distribution proxy", d)] {
        table.row(
            &quiet.mark(&format!("{what}: berth / {reference}")),
            format!("{b:.0}/s"),
            format!("{r:.0}/s"),
            ratio(b, r),
            "—",
        );
    }
    table.note(format!(
        "small blob: median of {ROUNDS} rounds of {}s wrk -t2 -c64; {errors} wrk errors; \
         upstream requests during the runs: berth {}, distribution {}; berth writes one access \
         log line per request, as nginx and distribution (info level) do here",
        DURATION.as_secs(),
        upstream[0],
        upstream[2]
    ));
}
