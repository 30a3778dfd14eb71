//! Several replicas (`fs` + cluster) joined through a redis-server started
//! here: upstream GETs when 30 cold clients spread over three replicas; a
//! warm 48 MiB blob read by a replica from its peer against a replica's own
//! disk; the latency a cached manifest by tag gains with the Redis index;
//! and a cold GET of the 1 GiB layer through replica B while replica A
//! downloads it, against a cold GET through one replica. Each measure
//! takes fresh replicas and a Redis database of its own.

use crate::cold::curl;
use crate::sys::Quiet;
use crate::{Ctx, get_all, warm};
use berth_testkit::proc::free_port;
use berth_testkit::report::{Table, gibps, median, ratio, secs};
use berth_testkit::{Berth, RedisServer};
use std::io::Write as _;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const CLIENTS: usize = 30;
/// Sequential requests per latency sample.
const LATENCY_GETS: usize = 2000;

/// What the replicas share.
struct Shared {
    redis: RedisServer,
    secret: tempfile::NamedTempFile,
}

impl Shared {
    /// A replica in Redis database `db`.
    fn replica(&self, ctx: &Ctx, db: u32) -> Berth {
        let url = self.redis.url();
        let url = url.trim_end_matches("/0");
        Berth::start(&format!(
            "listen = \"127.0.0.1:{}\"\n{}\n[cluster]\nredis_url = \"{url}/{db}\"\nsecret_file = {:?}\n",
            free_port(),
            ctx.hub,
            self.secret.path()
        ))
    }
}

/// Every measure of the cluster.
pub(crate) async fn cluster(ctx: &Ctx, table: &mut Table) {
    let mut secret = tempfile::NamedTempFile::new().expect("temp file");
    secret
        .write_all(b"a-benchmark-cluster-secret")
        .expect("write the secret");
    let shared = Shared {
        redis: RedisServer::start(),
        secret,
    };
    cold_spread(ctx, &shared, table).await;
    peer_against_own_disk(ctx, &shared, table).await;
    index_latency(ctx, &shared, table).await;
    cold_while_filling(ctx, &shared, table).await;
}

/// Upstream GETs when 30 clients ask three fresh replicas for the 48 MiB
/// blob at once, spread evenly.
async fn cold_spread(ctx: &Ctx, shared: &Shared, table: &mut Table) {
    let big = &ctx.up.images().big;
    let blob = big.largest_blob();
    let replicas: Vec<Berth> = (0..3).map(|_| shared.replica(ctx, 1)).collect();
    ctx.up.reset_requests();
    let clients = (0..CLIENTS).map(|i| {
        let url = format!("{}{}", replicas[i % 3].url(), big.blob_path(blob));
        async move { get_all(&ctx.client, &url, &[]).await }
    });
    for (status, n, _) in futures_util::future::join_all(clients).await {
        assert_eq!((status, n), (200, blob.size), "cold GET through a replica");
    }
    let gets = ctx
        .up
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.ends_with(&blob.digest))
        .count();
    table.row(
        "upstream GETs for 30 concurrent cold clients of one 48 MiB blob over 3 replicas (fs + cluster)",
        gets.to_string(),
        "—".to_owned(),
        "—".to_owned(),
        "1",
    );
}

/// A warm 48 MiB blob: read by a fresh replica from the peer that holds it
/// (the client's GET through the fresh replica), against a GET of it from
/// the holder's own disk.
async fn peer_against_own_disk(ctx: &Ctx, shared: &Shared, table: &mut Table) {
    let big = &ctx.up.images().big;
    let blob = big.largest_blob();
    let path = big.blob_path(blob);
    let (mut from_peer, mut own) = (Vec::new(), Vec::new());
    let quiet = Quiet::begin();
    for round in 0..ROUNDS {
        let db = 2 + u32::try_from(round).unwrap_or(0);
        let holder = shared.replica(ctx, db);
        warm(ctx, &format!("{}{path}", holder.url()), &[], blob.size).await;
        for _ in 0..3 {
            let (status, n, took) =
                get_all(&ctx.client, &format!("{}{path}", holder.url()), &[]).await;
            assert_eq!((status, n), (200, blob.size));
            own.push(blob.size as f64 / took.as_secs_f64());
        }
        let fresh = shared.replica(ctx, db);
        let before = ctx.up.requests().len();
        let (status, n, took) = get_all(&ctx.client, &format!("{}{path}", fresh.url()), &[]).await;
        assert_eq!((status, n), (200, blob.size));
        assert_eq!(
            ctx.up.requests().len(),
            before,
            "the fresh replica went upstream"
        );
        from_peer.push(blob.size as f64 / took.as_secs_f64());
    }
    let (p, o) = (median(from_peer), median(own));
    table.row(
        &quiet.mark("warm 48 MiB blob, 1 conn.: through a replica that reads it from its peer / from the holder's own disk"),
        gibps(p),
        gibps(o),
        ratio(p, o),
        ">= 0.8",
    );
}

/// The (p50, p99) milliseconds of `LATENCY_GETS` sequential GETs of a
/// cached manifest by tag through `berth`.
async fn tag_latencies(ctx: &Ctx, berth: &Berth) -> (f64, f64) {
    let small = &ctx.up.images().small;
    let url = format!("{}/v2/{}/manifests/latest", berth.url(), small.repository);
    let accept = [("Accept", small.media_type.as_str())];
    warm(ctx, &url, &accept, small.manifest.len() as u64).await;
    let mut ms = Vec::with_capacity(LATENCY_GETS);
    for _ in 0..LATENCY_GETS {
        let start = Instant::now();
        let (status, _, _) = get_all(&ctx.client, &url, &accept).await;
        assert_eq!(status, 200);
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    (at(0.5), at(0.99))
}

/// What the Redis index adds to a cached manifest by tag.
async fn index_latency(ctx: &Ctx, shared: &Shared, table: &mut Table) {
    let clustered = shared.replica(ctx, 6);
    let alone = ctx.berth();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let quiet = Quiet::begin();
    for _ in 0..ROUNDS {
        with.push(tag_latencies(ctx, &clustered).await);
        without.push(tag_latencies(ctx, &alone).await);
    }
    let p = |v: &[(f64, f64)], i: usize| {
        median(v.iter().map(|x| if i == 0 { x.0 } else { x.1 }).collect())
    };
    for (i, name, goal) in [(0, "p50", "<= 1 ms"), (1, "p99", "<= 5 ms")] {
        let (w, a) = (p(&with, i), p(&without, i));
        table.row(
            &quiet.mark(&format!(
                "cached manifest by tag, {name} latency, 1 conn.: Redis index / local index (added)"
            )),
            format!("{w:.2} ms"),
            format!("{a:.2} ms"),
            format!("+{:.2} ms", w - a),
            goal,
        );
    }
}

/// A cold GET of the 1 GiB layer through replica B, started once replica
/// A's download of it is under way, against a cold GET through one fresh
/// replica.
async fn cold_while_filling(ctx: &Ctx, shared: &Shared, table: &mut Table) {
    let gib = &ctx.gib;
    let (mut second, mut single) = (Vec::new(), Vec::new());
    let quiet = Quiet::begin();
    for round in 0..ROUNDS {
        let db = 7 + 2 * u32::try_from(round).unwrap_or(0);
        {
            let one = shared.replica(ctx, db);
            single.push(
                curl(
                    &format!("{}{}", one.url(), gib.layer_path()),
                    None,
                    gib.layer.1,
                )
                .await,
            );
        }
        let a = shared.replica(ctx, db + 1);
        let b = shared.replica(ctx, db + 1);
        let first = tokio::spawn({
            let url = format!("{}{}", a.url(), gib.layer_path());
            let size = gib.layer.1;
            async move { curl(&url, None, size).await }
        });
        // A holds the lease and has begun.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !a
            .metrics()
            .await
            .contains("berth_cluster_events_total{event=\"lease_taken\"} 1")
        {
            assert!(Instant::now() < deadline, "replica A never took the lease");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        second.push(
            curl(
                &format!("{}{}", b.url(), gib.layer_path()),
                None,
                gib.layer.1,
            )
            .await,
        );
        first.await.expect("replica A's client");
    }
    let (s, o) = (median(second), median(single));
    table.row(
        &quiet.mark("cold GET of the 1 GiB layer, curl: through replica B while A downloads it / through one replica"),
        secs(s),
        secs(o),
        ratio(s, o),
        "<= 1.1",
    );
    table.note(format!(
        "cluster: redis-server on 127.0.0.1, replicas on fs, each measure on fresh replicas and \
         a Redis database of its own; the manifest latencies are {LATENCY_GETS} sequential GETs, \
         median of {ROUNDS} rounds"
    ));
}
