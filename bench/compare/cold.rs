//! Cold pulls, each through a fresh berth or distribution proxy (empty
//! storage): the 1 GiB image with skopeo and its layer with curl against the
//! direct upstream, the upstream bytes they cost, 32 concurrent cold clients
//! of one blob, and the upstream requests of a warm pull by tag. Every
//! upstream count comes from the tap.

use crate::big_image::BigImage;
use crate::proxy::DistProxy;
use crate::sys::{Quiet, sync_disks};
use crate::{Ctx, get_all};
use berth_testkit::proc::wait_until;
use berth_testkit::report::{Table, median, ratio, secs};
use berth_testkit::{Recorded, skopeo_copy_to_dir};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const CLIENTS: usize = 32;

/// `skopeo copy docker://HOST/REF dir:TMP`; time to completion in seconds.
async fn skopeo_pull(host: &str, reference: &str) -> f64 {
    let dest = tempfile::tempdir().expect("temp dir");
    sync_disks();
    let start = Instant::now();
    skopeo_copy_to_dir(&format!("{host}/{reference}"), dest.path())
        .await
        .unwrap_or_else(|e| panic!("skopeo pull from {host}: {e}"));
    start.elapsed().as_secs_f64()
}

/// `curl -o /dev/null URL`; curl's `time_total` in seconds.
pub(crate) async fn curl(url: &str, bearer: Option<&str>, size: u64) -> f64 {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w"])
        .arg("%{http_code} %{size_download} %{time_total}");
    if let Some(token) = bearer {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    sync_disks();
    let out = cmd.arg(url).output().await.expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        fields.get(..2),
        Some(&["200", size.to_string().as_str()][..]),
        "curl {url}: {text}"
    );
    fields[2].parse().expect("curl time_total")
}

/// (bytes, GETs of the layer) that went upstream for the image, counting
/// each 200 answer to a GET as its full size.
fn upstream_bytes(requests: &[Recorded], gib: &BigImage) -> (u64, usize) {
    let (mut bytes, mut layer_gets) = (0, 0);
    for r in requests
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200)
    {
        if r.path.ends_with(&gib.layer.0) {
            bytes += gib.layer.1;
            layer_gets += 1;
        } else if r.path.ends_with(&gib.config.0) {
            bytes += gib.config.1;
        } else if r.path.contains("/manifests/") {
            bytes += gib.manifest_len;
        }
    }
    (bytes, layer_gets)
}

/// Cold pulls of the 1 GiB image; returns the distribution proxy that did
/// its cold pull, now warm, for the memory reference.
pub(crate) async fn cold_pulls(ctx: &Ctx, table: &mut Table) -> DistProxy {
    let gib = &ctx.gib;
    let reference = gib.reference();
    let scope = format!("repository:{}:pull", crate::big_image::REPOSITORY);
    let token = ctx.up.issuer().mint(&[&scope], None);
    let direct_url = format!("{}{}", ctx.up.url(), gib.layer_path());
    let (mut sk_direct, mut sk_berth, mut curl_direct, mut curl_berth) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut berth_bytes: Vec<(u64, usize)> = Vec::new();
    let quiet = Quiet::begin();
    for _ in 0..ROUNDS {
        sk_direct.push(skopeo_pull(&ctx.up.host(), &reference).await);
        {
            let berth = ctx.berth();
            ctx.up.reset_requests();
            sk_berth.push(skopeo_pull(&berth.addr, &reference).await);
            berth_bytes.push(upstream_bytes(&ctx.up.requests(), gib));
        }
        curl_direct.push(curl(&direct_url, Some(&token), gib.layer.1).await);
        {
            let berth = ctx.berth();
            let url = format!("{}{}", berth.url(), gib.layer_path());
            curl_berth.push(curl(&url, None, gib.layer.1).await);
        }
    }
    let held = {
        let berth = ctx.berth();
        let url = format!("{}{}", berth.url(), gib.layer_path());
        last_byte(ctx, &url, gib.layer.1).await
    };
    let dist = DistProxy::start(&ctx.up.url());
    ctx.up.reset_requests();
    let sk_dist = skopeo_pull(&dist.host(), &reference).await;
    // Its second, storing fetch may still be running: wait for it.
    let stored = wait_until(Duration::from_secs(120), || dist.has_blob(&gib.layer.0));
    assert!(stored, "distribution never stored the layer");
    let dist_bytes = upstream_bytes(&ctx.up.requests(), gib);

    let (sd, sb, cd, cb) = (
        median(sk_direct),
        median(sk_berth.clone()),
        median(curl_direct),
        median(curl_berth),
    );
    let row = |t: &mut Table, what: &str, b: f64, r: f64, goal: &str| {
        t.row(&quiet.mark(what), secs(b), secs(r), ratio(b, r), goal);
    };
    row(
        table,
        "cold pull of the 1 GiB image, skopeo: berth / direct upstream",
        sb,
        sd,
        "<= 1.1",
    );
    row(
        table,
        "cold GET of the 1 GiB layer, curl: berth / direct upstream",
        cb,
        cd,
        "<= 1.1",
    );
    row(
        table,
        "cold pull of the 1 GiB image, skopeo: berth / distribution proxy (1 run)",
        sb,
        sk_dist,
        "—",
    );
    let size = gib.size() as f64;
    let worst = berth_bytes.iter().copied().max().unwrap_or_default();
    let (b, d) = (worst.0 as f64 / size, dist_bytes.0 as f64 / size);
    table.row(
        &quiet.mark("upstream bytes for a cold pull / image size (skopeo, 1 GiB image)"),
        format!("{b:.2} ({} layer GET)", worst.1),
        format!("{d:.2} ({} layer GETs)", dist_bytes.1),
        ratio(b, d),
        "1.00 (distribution: about 2)",
    );
    table.note(format!(
        "cold pulls: median of {ROUNDS} (skopeo into a dir on disk; curl to /dev/null), a fresh \
         berth each time, `sync` before each; berth skopeo runs: {}; upstream bytes: worst \
         berth run, a 200 answer to a GET counted as the whole blob",
        sk_berth
            .iter()
            .map(|s| format!("{s:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    table.note(format!(
        "cold GET of the 1 GiB layer through a fresh berth (reqwest): all but the last byte \
         after {:.2} s, the last byte after {:.2} s more",
        held.0, held.1
    ));
    dist
}

/// GETs `url` (a cold blob of `size` bytes): seconds until all but the
/// last byte arrived, then seconds the last byte took after that.
async fn last_byte(ctx: &Ctx, url: &str, size: u64) -> (f64, f64) {
    use futures_util::StreamExt;
    sync_disks();
    let start = Instant::now();
    let response = ctx.client.get(url).send().await.expect("cold GET");
    assert_eq!(response.status(), 200, "cold GET {url}");
    let mut body = response.bytes_stream();
    let (mut n, mut almost) = (0u64, None);
    while let Some(chunk) = body.next().await {
        n += chunk.expect("cold GET body").len() as u64;
        if n + 1 >= size && almost.is_none() {
            almost = Some(start.elapsed());
        }
    }
    assert_eq!(n, size, "cold GET {url}");
    let almost = almost.unwrap_or_default();
    (
        almost.as_secs_f64(),
        (start.elapsed() - almost).as_secs_f64(),
    )
}

/// Upstream GETs when 32 clients ask a fresh server for the 48 MiB blob at once.
pub(crate) async fn concurrent_cold(ctx: &Ctx, table: &mut Table) {
    let big = &ctx.up.images().big;
    let blob = big.largest_blob();
    let path = big.blob_path(blob);
    let quiet = Quiet::begin();
    let mut gets = Vec::new();
    let mut times = Vec::new();
    for server in ["berth", "distribution"] {
        let (berth, dist);
        let base = if server == "berth" {
            berth = ctx.berth();
            berth.url()
        } else {
            dist = DistProxy::start(&ctx.up.url());
            dist.url()
        };
        ctx.up.reset_requests();
        let url = format!("{base}{path}");
        let start = Instant::now();
        let clients = (0..CLIENTS).map(|_| get_all(&ctx.client, &url, &[]));
        for (status, n, _) in futures_util::future::join_all(clients).await {
            assert_eq!((status, n), (200, blob.size), "{server}: cold GET {url}");
        }
        times.push(start.elapsed());
        // distribution's storing fetch may start after the clients finish.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let requests = ctx.up.requests();
        let of_blob = |status: u16| {
            requests
                .iter()
                .filter(|r| {
                    r.method == "GET" && r.status == status && r.path.ends_with(&blob.digest)
                })
                .count()
        };
        gets.push((of_blob(200), of_blob(401)));
    }
    table.row(
        &quiet.mark("upstream GETs for 32 concurrent cold clients of one 48 MiB blob"),
        gets[0].0.to_string(),
        format!("{} (distribution)", gets[1].0),
        ratio(gets[0].0 as f64, gets[1].0 as f64),
        "1",
    );
    table.note(format!(
        "32 cold clients: GETs of the blob answered 200 (a body); besides, GETs answered 401 \
         (token challenge): berth {}, distribution {}; all 32 done in {:.2} s through berth, \
         {:.2} s through distribution",
        gets[0].1,
        gets[1].1,
        times[0].as_secs_f64(),
        times[1].as_secs_f64()
    ));
}

/// Upstream requests (tap + token issuer) for a second pull by tag.
pub(crate) async fn warm_by_tag(ctx: &Ctx, table: &mut Table) {
    let reference = ctx.up.images().small.reference();
    let quiet = Quiet::begin();
    let mut counts = Vec::new();
    for server in ["berth", "distribution"] {
        let (berth, dist);
        let host = if server == "berth" {
            berth = ctx.berth();
            berth.addr.clone()
        } else {
            dist = DistProxy::start(&ctx.up.url());
            dist.host()
        };
        skopeo_pull(&host, &reference).await;
        ctx.up.reset_requests();
        ctx.up.issuer().reset_log();
        skopeo_pull(&host, &reference).await;
        let requests = ctx.up.requests();
        let tokens = ctx.up.issuer().token_requests();
        let mut parts: Vec<String> = ["HEAD", "GET"]
            .iter()
            .map(|m| (m, requests.iter().filter(|r| r.method == *m).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(m, n)| format!("{n} {m}"))
            .collect();
        if tokens > 0 {
            parts.push(format!("{tokens} token"));
        }
        counts.push((requests.len() + tokens, parts.join(", ")));
    }
    let show = |(n, parts): &(usize, String)| {
        if parts.is_empty() {
            n.to_string()
        } else {
            format!("{n} ({parts})")
        }
    };
    table.row(
        &quiet.mark("upstream requests for a warm pull by tag within tag_ttl (skopeo)"),
        show(&counts[0]),
        show(&counts[1]),
        "—".to_owned(),
        "0",
    );
}
