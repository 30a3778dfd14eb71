//! HTTPS: berth's TLS listener against nginx serving the same 48 MiB blob
//! with the same certificate over TLS 1.3 (both follow the client's order
//! of cipher suites, so wrk and curl get the same suite from each): warm
//! throughput at 1 and 16 connections with the servers' CPU per GiB,
//! HTTP/2 against HTTP/1.1 through berth with one curl, HTTPS against
//! berth's plain listener, a cold pull over HTTPS against one over plain
//! HTTP, and new TLS connections per second with and without resumption.

use crate::nginx::Nginx;
use crate::sys::{Quiet, cpu_seconds, tree_cpu_seconds};
use crate::throughput::{CURL_GETS, curl_rate};
use crate::{Ctx, warm, wrk};
use berth_testkit::report::{Table, gibps, median, ratio, secs};
use berth_testkit::skopeo_copy_to_dir;
use berth_testkit::tls::TestCa;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const DURATION: Duration = Duration::from_secs(5);

/// Bytes/s and server CPU seconds per GiB of one wrk run on `url`, with
/// `cpu` reading the server's CPU seconds.
async fn wrk_with_cpu(url: &str, threads: u32, conns: u32, cpu: &dyn Fn() -> f64) -> (f64, f64) {
    let before = cpu();
    let w = wrk::run(url, threads, conns, DURATION, &[]).await;
    assert_eq!(w.errors, 0, "wrk errors on {url}");
    let used = cpu() - before;
    (w.bytes_per_sec(), used / (w.bytes / f64::from(1u32 << 30)))
}

/// TLS connections per second `openssl s_time` made to `port` in 5 s:
/// full handshakes, or resumed sessions with `reuse`.
async fn handshakes(port: u16, reuse: bool) -> Option<f64> {
    let out = tokio::process::Command::new("openssl")
        .args([
            "s_time",
            "-connect",
            &format!("localhost:{port}"),
            "-time",
            "5",
        ])
        .arg(if reuse { "-reuse" } else { "-new" })
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "1234 connections in 6 real seconds, 0 bytes read per connection"
    let line = text.lines().find(|l| l.contains("real seconds"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let n: f64 = words.first()?.parse().ok()?;
    let real: f64 = words.get(3)?.parse().ok()?;
    (real > 0.0).then_some(n / real)
}

async fn cold_pull(addr: &str, reference: &str) -> f64 {
    let dest = tempfile::tempdir().expect("temp dir");
    crate::sys::sync_disks();
    let start = Instant::now();
    skopeo_copy_to_dir(&format!("{addr}/{reference}"), dest.path())
        .await
        .unwrap_or_else(|e| panic!("skopeo pull from {addr}: {e}"));
    start.elapsed().as_secs_f64()
}

pub(crate) async fn https(ctx: &Ctx, table: &mut Table) {
    let ca = TestCa::new();
    let leaf = ca.issue("bench", 2090);
    let images = ctx.up.images();
    let blob = images.big.largest_blob();
    let path = images.big.blob_path(blob);
    let file = images.blob_file(&blob.digest);
    let nginx = Nginx::start_tls(&[(path.clone(), file.as_path())], &leaf.cert, &leaf.key);
    let tls_hub = format!("{}\n{}", ctx.hub, leaf.tls_toml());
    let berth = berth_testkit::Berth::start(&tls_hub);
    let plain = ctx.berth();
    let secure = format!("https://localhost:{}{path}", berth.port());
    let insecure = format!("{}{path}", plain.url());
    let nginx_url = format!("{}{path}", nginx.tls_url());
    warm(ctx, &insecure, &[], blob.size).await;
    let client = ca.client();
    for _ in 0..40 {
        let before = ctx.up.requests().len();
        let r = client.get(&secure).send().await.expect("GET over HTTPS");
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.expect("body").len() as u64, blob.size);
        if ctx.up.requests().len() == before {
            break;
        }
    }

    let berth_cpu = || cpu_seconds(berth.pid()).unwrap_or(0.0);
    let nginx_cpu = || tree_cpu_seconds(nginx.pid());
    let ca_file = ca.ca_file().display().to_string();
    let quiet = Quiet::begin();
    let (mut b1, mut n1, mut p1, mut b16, mut n16) = Default::default();
    let (mut bcpu, mut ncpu, mut h1, mut h2): (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) =
        Default::default();
    for _ in 0..ROUNDS {
        let push = |v: &mut Vec<f64>, x: f64| v.push(x);
        let (rate, _) = wrk_with_cpu(&secure, 1, 1, &berth_cpu).await;
        push(&mut b1, rate);
        let (rate, _) = wrk_with_cpu(&nginx_url, 1, 1, &nginx_cpu).await;
        push(&mut n1, rate);
        let (rate, _) = wrk_with_cpu(&insecure, 1, 1, &berth_cpu).await;
        push(&mut p1, rate);
        let (rate, cpu) = wrk_with_cpu(&secure, 2, 16, &berth_cpu).await;
        push(&mut b16, rate);
        bcpu.push(cpu);
        let (rate, cpu) = wrk_with_cpu(&nginx_url, 2, 16, &nginx_cpu).await;
        push(&mut n16, rate);
        ncpu.push(cpu);
        let tls = ["--cacert", ca_file.as_str()];
        h1.push(
            curl_rate(
                &secure,
                blob.size,
                CURL_GETS,
                &[&tls[..], &["--http1.1"]].concat(),
            )
            .await,
        );
        h2.push(
            curl_rate(
                &secure,
                blob.size,
                CURL_GETS,
                &[&tls[..], &["--http2"]].concat(),
            )
            .await,
        );
    }
    let row = |t: &mut Table, what: &str, b: Vec<f64>, r: Vec<f64>, goal: &str| {
        let (b, r) = (median(b), median(r));
        t.row(&quiet.mark(what), gibps(b), gibps(r), ratio(b, r), goal);
    };
    row(
        table,
        "warm 48 MiB blob over HTTPS, HTTP/1.1, 1 conn., wrk: berth / nginx",
        b1.clone(),
        n1,
        ">= 1.0",
    );
    row(
        table,
        "warm 48 MiB blob over HTTPS, HTTP/1.1, 16 conn., wrk: berth / nginx",
        b16,
        n16,
        ">= 1.0",
    );
    row(
        table,
        "warm 48 MiB blob, 1 conn., curl: berth HTTP/2 / berth HTTP/1.1 (HTTPS)",
        h2,
        h1,
        ">= 0.9",
    );
    row(
        table,
        "warm 48 MiB blob, 1 conn., wrk: berth HTTPS / berth plain HTTP",
        b1,
        p1,
        "(reported)",
    );
    let (bc, nc) = (median(bcpu), median(ncpu));
    table.row(
        &quiet.mark("server CPU seconds per GiB served over HTTPS, 16 conn.: berth / nginx"),
        format!("{bc:.3} s"),
        format!("{nc:.3} s"),
        ratio(bc, nc),
        "<= 1.0",
    );

    let reference = ctx.gib.reference();
    let (mut cold_tls, mut cold_plain) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        {
            let fresh = berth_testkit::Berth::start(&tls_hub);
            cold_tls.push(cold_pull(&format!("localhost:{}", fresh.port()), &reference).await);
        }
        let fresh = ctx.berth();
        cold_plain.push(cold_pull(&fresh.addr, &reference).await);
    }
    let (ct, cp) = (median(cold_tls), median(cold_plain));
    table.row(
        &quiet.mark("cold pull of the 1 GiB image, skopeo: over HTTPS / over plain HTTP"),
        secs(ct),
        secs(cp),
        ratio(ct, cp),
        "<= 1.1",
    );

    for reuse in [false, true] {
        let (mut b, mut n) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            b.extend(handshakes(berth.port(), reuse).await);
            n.extend(handshakes(nginx.port(), reuse).await);
        }
        if b.is_empty() || n.is_empty() {
            table.note(format!(
                "openssl s_time (reuse: {reuse}) printed nothing to read"
            ));
            continue;
        }
        let (b, n) = (median(b), median(n));
        let what = if reuse {
            "resumed sessions"
        } else {
            "full handshakes"
        };
        table.row(
            &quiet.mark(&format!(
                "new TLS connections per second, {what}, openssl s_time: berth / nginx"
            )),
            format!("{b:.0}/s"),
            format!("{n:.0}/s"),
            ratio(b, n),
            ">= 1.0",
        );
    }
    table.note(format!(
        "HTTPS: TLS 1.3 with the same certificate (ECDSA P-256) for both; median of {ROUNDS} rounds of {}s \
         of wrk (OpenSSL, which offers AES-256-GCM first) and of one curl fetching the blob {CURL_GETS} times; \
         CPU is the server's user + system time during the 16-connection runs (nginx: master and workers); \
         the cold pull is skopeo copying the 1 GiB image through a fresh berth",
        DURATION.as_secs()
    ));
}
