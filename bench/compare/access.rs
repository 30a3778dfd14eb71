//! The cost of admission: berth with 20 access rules (none matching, so
//! every request runs through all of them) and a per-client rate limit
//! (high enough never to refuse) against berth with neither, on the cached
//! manifest by digest (wrk, 64 connections) and the warm 48 MiB blob (wrk,
//! 1 connection). Servers take turns within each round.

use crate::sys::Quiet;
use crate::{Ctx, warm, wrk};
use berth_testkit::Berth;
use berth_testkit::report::{Table, gibps, median, ratio};
use std::time::Duration;

const ROUNDS: usize = 3;
const DURATION: Duration = Duration::from_secs(5);

/// Twenty rules of every kind, none of which matches the benchmark's
/// requests, and a rate limit on.
fn guarded() -> String {
    let mut toml = String::from("[limits]\nrate = 1000000\nburst = 1000000\n");
    for i in 0..20 {
        let condition = match i % 5 {
            0 => format!("ip = [\"203.0.113.{i}/32\"]"),
            1 => format!("user_agent = \"(?i)scanner-{i}|zgrab\""),
            2 => format!("path = \"^/v2/blocked-{i}/\""),
            3 => format!("repository = \"^secret-{i}/\""),
            _ => format!("ip_regex = \"^198\\\\.51\\\\.100\\\\.{i}$\""),
        };
        toml.push_str(&format!(
            "[[access.rules]]\nname = \"rule-{i}\"\naction = \"deny\"\n{condition}\n"
        ));
    }
    toml
}

pub(crate) async fn access(ctx: &Ctx, table: &mut Table) {
    let images = ctx.up.images();
    let small = &images.small;
    let manifest = format!("/v2/{}/manifests/{}", small.repository, small.digest);
    let accept = format!("Accept: {}", small.media_type);
    let blob = images.big.largest_blob();
    let blob_path = images.big.blob_path(blob);
    let open = ctx.berth();
    let guarded = Berth::start(&format!("{}\n{}", ctx.hub, guarded()));
    let bases = [open.url(), guarded.url()];
    for base in &bases {
        let url = format!("{base}{manifest}");
        warm(
            ctx,
            &url,
            &[("Accept", &small.media_type)],
            small.manifest.len() as u64,
        )
        .await;
        warm(ctx, &format!("{base}{blob_path}"), &[], blob.size).await;
    }
    let quiet = Quiet::begin();
    let (mut requests, mut bytes) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut errors = 0;
    for _ in 0..ROUNDS {
        for (i, base) in bases.iter().enumerate() {
            let w = wrk::run(&format!("{base}{manifest}"), 2, 64, DURATION, &[&accept]).await;
            errors += w.errors;
            requests[i].push(w.requests_per_sec());
            let w = wrk::run(&format!("{base}{blob_path}"), 1, 1, DURATION, &[]).await;
            errors += w.errors;
            bytes[i].push(w.bytes_per_sec());
        }
    }
    let [open_rps, guarded_rps] = requests.map(median);
    let [open_bps, guarded_bps] = bytes.map(median);
    table.row(
        &quiet.mark("cached manifest by digest, 64 conn. (req/s): 20 rules + rate limit / open"),
        format!("{guarded_rps:.0}/s"),
        format!("{open_rps:.0}/s"),
        ratio(guarded_rps, open_rps),
        ">= 0.95",
    );
    table.row(
        &quiet.mark("warm 48 MiB blob, 1 conn.: 20 rules + rate limit / open"),
        gibps(guarded_bps),
        gibps(open_bps),
        ratio(guarded_bps, open_bps),
        ">= 0.95",
    );
    table.note(format!(
        "admission: 20 deny rules (address, agent, path, repository, address pattern) that match \
         nothing, and rate = burst = 1,000,000 per client; median of {ROUNDS} rounds of {}s; \
         {errors} wrk errors",
        DURATION.as_secs()
    ));
}
