//! The S3 backend, against s3s-fs started here: the warm 48 MiB blob
//! through berth on `s3` with a local tier against berth on `fs`, and
//! through berth on `s3` without a tier against the S3 server's own GET of
//! the object (the presigned URL a `redirect = true` berth hands out); a
//! cold GET of the 1 GiB layer through berth on `s3` against berth on
//! `fs`; and the upstream GETs of 32 concurrent cold clients on `s3`.
//! Servers take turns within each round; figures are medians.

use crate::cold::curl;
use crate::sys::Quiet;
use crate::throughput::{CURL_GETS, curl_rate};
use crate::{Ctx, get_all, sink, warm};
use berth_testkit::proc::wait_until;
use berth_testkit::report::{Table, gibps, median, ratio, secs};
use berth_testkit::{Berth, S3Server};
use std::time::Duration;

const ROUNDS: usize = 3;
const DURATION: Duration = Duration::from_secs(5);
const CLIENTS: usize = 32;

/// The config of a berth on `s3`'s bucket under `prefix`, with `extra`
/// keys in `[storage]`.
fn on_s3(ctx: &Ctx, s3: &S3Server, prefix: &str, extra: &str) -> String {
    format!(
        "{}{}prefix = \"{prefix}\"\n{extra}",
        ctx.hub,
        s3.storage_toml()
    )
}

/// Whether `digest` is an object under `prefix`.
fn in_bucket(s3: &S3Server, prefix: &str, digest: &str) -> bool {
    let key = format!(
        "{prefix}blobs/sha256/{}",
        digest.trim_start_matches("sha256:")
    );
    s3.keys().contains(&key)
}

/// Every measure of the S3 backend.
pub(crate) async fn s3(ctx: &Ctx, table: &mut Table) {
    let s3 = S3Server::start();
    warm_blob(ctx, &s3, table).await;
    cold_layer(ctx, &s3, table).await;
    concurrent(ctx, &s3, table).await;
}

/// The warm 48 MiB blob, four ways.
async fn warm_blob(ctx: &Ctx, s3: &S3Server, table: &mut Table) {
    let big = &ctx.up.images().big;
    let blob = big.largest_blob();
    let path = big.blob_path(blob);
    let fs = ctx.berth();
    let tiered = Berth::start(&on_s3(ctx, s3, "warm/", "local_tier_size = \"1GiB\"\n"));
    warm(ctx, &format!("{}{path}", tiered.url()), &[], blob.size).await;
    let tier = tiered.data_dir.join("tier");
    assert!(
        wait_until(Duration::from_secs(60), || {
            berth_testkit::checks::cached(&tier, &blob.digest)
        }),
        "the blob never reached the local tier"
    );
    let bare = Berth::start(&on_s3(ctx, s3, "warm/", ""));
    let redirecting = Berth::start(&on_s3(ctx, s3, "warm/", "redirect = true\n"));
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = no_follow
        .get(format!("{}{path}", redirecting.url()))
        .send()
        .await
        .expect("GET through the redirecting berth");
    assert_eq!(answer.status(), 307, "the redirecting berth");
    let presigned = answer.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let urls = [
        format!("{}{path}", fs.url()),
        format!("{}{path}", tiered.url()),
        format!("{}{path}", bare.url()),
        presigned,
    ];
    for url in &urls[..3] {
        warm(ctx, url, &[], blob.size).await;
    }

    let loads: [(&str, usize); 3] = [
        ("curl", 1),
        ("discarding client", 1),
        ("discarding client", 16),
    ];
    // rates[load][server]
    let mut rates = vec![vec![Vec::new(); urls.len()]; loads.len()];
    let sent_before = tiered_zero_copy(&tiered).await;
    let quiet = Quiet::begin();
    for _ in 0..ROUNDS {
        for (li, (tool, conns)) in loads.iter().enumerate() {
            for (si, url) in urls.iter().enumerate() {
                let rate = if *tool == "curl" {
                    curl_rate(url, blob.size, CURL_GETS, &[]).await
                } else {
                    sink::rate(url, blob.size, *conns, DURATION).await
                };
                rates[li][si].push(rate);
            }
        }
    }
    let zero_copy = tiered_zero_copy(&tiered).await - sent_before;
    for (li, (tool, conns)) in loads.iter().enumerate() {
        let [f, t, b, o] = [0, 1, 2, 3].map(|si| median(rates[li][si].clone()));
        let what = format!("warm 48 MiB blob, {conns} conn., {tool}");
        table.row(
            &quiet.mark(&format!("{what}: berth s3 + local tier / berth fs")),
            gibps(t),
            gibps(f),
            ratio(t, f),
            ">= 0.95",
        );
        table.row(
            &quiet.mark(&format!(
                "{what}: berth s3, no tier / the S3 server's own GET"
            )),
            gibps(b),
            gibps(o),
            ratio(b, o),
            ">= 0.8",
        );
    }
    table.note(format!(
        "S3 warm blob: s3s-fs on 127.0.0.1 (objects as files on the same disk); its own GET is \
         the presigned URL a `redirect = true` berth answered with; median of {ROUNDS} rounds of \
         {CURL_GETS} curl transfers and {}s of the discarding client; the tiered berth sent {:.1} \
         GiB with sendfile meanwhile",
        DURATION.as_secs(),
        zero_copy as f64 / f64::from(1u32 << 30)
    ));
}

/// `berth_served_zero_copy_bytes_total` of `berth`.
async fn tiered_zero_copy(berth: &Berth) -> u64 {
    berth
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("berth_served_zero_copy_bytes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A cold GET of the 1 GiB layer through a fresh berth on `s3` (a fresh
/// prefix each round) and on `fs`.
async fn cold_layer(ctx: &Ctx, s3: &S3Server, table: &mut Table) {
    let gib = &ctx.gib;
    let (mut through_fs, mut through_s3, mut stored) = (Vec::new(), Vec::new(), Vec::new());
    let quiet = Quiet::begin();
    for round in 0..ROUNDS {
        {
            let berth = ctx.berth();
            let url = format!("{}{}", berth.url(), gib.layer_path());
            through_fs.push(curl(&url, None, gib.layer.1).await);
        }
        let prefix = format!("cold-{round}/");
        let berth = Berth::start(&on_s3(ctx, s3, &prefix, ""));
        let url = format!("{}{}", berth.url(), gib.layer_path());
        let start = std::time::Instant::now();
        through_s3.push(curl(&url, None, gib.layer.1).await);
        assert!(
            wait_until(Duration::from_secs(300), || in_bucket(
                s3,
                &prefix,
                &gib.layer.0
            )),
            "the layer never reached the bucket"
        );
        stored.push(start.elapsed().as_secs_f64());
    }
    let (f, s) = (median(through_fs), median(through_s3));
    table.row(
        &quiet.mark("cold GET of the 1 GiB layer, curl: berth s3 / berth fs"),
        secs(s),
        secs(f),
        ratio(s, f),
        "<= 1.2",
    );
    table.note(format!(
        "S3 cold layer: a fresh berth and prefix each round; the client has every byte when \
         the download is verified, the upload follows: the object was in the bucket {:.2} s \
         (median) after the GET began",
        median(stored)
    ));
}

/// Upstream GETs when 32 clients ask a fresh berth on `s3` for the 48 MiB
/// blob at once.
async fn concurrent(ctx: &Ctx, s3: &S3Server, table: &mut Table) {
    let big = &ctx.up.images().big;
    let blob = big.largest_blob();
    let berth = Berth::start(&on_s3(ctx, s3, "concurrent/", ""));
    let url = format!("{}{}", berth.url(), big.blob_path(blob));
    ctx.up.reset_requests();
    let clients = (0..CLIENTS).map(|_| get_all(&ctx.client, &url, &[]));
    for (status, n, _) in futures_util::future::join_all(clients).await {
        assert_eq!((status, n), (200, blob.size), "cold GET {url}");
    }
    let gets = ctx
        .up
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.ends_with(&blob.digest))
        .count();
    table.row(
        "upstream GETs for 32 concurrent cold clients of one 48 MiB blob, berth on s3",
        gets.to_string(),
        "—".to_owned(),
        "—".to_owned(),
        "1",
    );
}
