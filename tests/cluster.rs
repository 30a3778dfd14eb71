//! Several replicas as one cache, end to end: berths joined through a
//! real redis-server, in front of the real token-auth registry, with their
//! blobs in one bucket (s3s-fs). One upstream GET for cold clients spread
//! over the replicas; a tag revalidated by one replica is fresh for all; a
//! replica killed or frozen mid-fill is taken over by its readers
//! elsewhere; Redis stopped mid-test costs coordination, not service, and
//! the replicas rejoin by themselves.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fleet;

use berth_testkit::checks::sha256;
use berth_testkit::proc::signal;
use berth_testkit::{S3Server, TestRegistry};
use fleet::{Fleet, get_verified, metric, until_metric, until_upstream_asked};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn thirty_cold_clients_over_three_replicas_cause_one_upstream_get() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let fleet = Fleet::start(&up, Some(&s3), 3, "");
    let blob = up.images().big.largest_blob().clone();
    // While the clients are served, at most one upload to the bucket runs:
    // the replicas reading the download of another keep their copy local.
    let done = std::sync::atomic::AtomicBool::new(false);
    let (most_uploads, ()) = tokio::join!(
        async {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(s3.uploads_open());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        },
        async {
            fleet.cold_clients(&up, &blob, 30).await;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    );
    assert_eq!(most_uploads, 1);
    assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
    // The two replicas that did not hold the lease read the blob from the
    // one that did, while it downloaded.
    let (mut from_peers, mut bytes_in) = (0, 0);
    for r in &fleet.replicas {
        from_peers += metric(r, "berth_cluster_events_total{event=\"peer_fill\"}").await;
        bytes_in += metric(r, "berth_cluster_peer_bytes_in_total").await;
        assert_eq!(metric(r, "berth_cluster_redis_up").await, 1);
    }
    assert!(from_peers >= 2, "{from_peers}");
    assert!(bytes_in >= 2 * blob.size, "{bytes_in}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_revalidated_by_one_replica_is_fresh_for_the_others() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let fleet = Fleet::start(&up, Some(&s3), 3, "");
    let image = up.images().small.clone();
    let dest = tempfile::tempdir().unwrap();
    fleet
        .pull_through_each("small", &image, dest.path(), "via", 3)
        .await;
    assert_eq!(
        up.count_path("/manifests/latest"),
        1,
        "one manifest request for three replicas: {:#?}",
        up.requests()
    );
    for blob in &image.blobs {
        assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
    }
}

/// Once replica 0 holds `blob`'s lease and upstream began answering it, a
/// verified GET of it through replica 1, returned once replica 1 streams it
/// from replica 0.
async fn reader_from_peer(
    up: &TestRegistry,
    fleet: &Fleet,
    blob: &berth_testkit::Blob,
) -> tokio::task::JoinHandle<()> {
    until_metric(
        &fleet.replicas[0],
        "berth_cluster_events_total{event=\"lease_taken\"}",
        1,
    )
    .await;
    until_upstream_asked(up, &blob.digest).await;
    let reader = tokio::spawn(get_verified(
        format!("{}/v2/library/big/blobs/{}", fleet.url(1), blob.digest),
        blob.digest.clone(),
    ));
    until_metric(
        &fleet.replicas[1],
        "berth_cluster_events_total{event=\"peer_fill\"}",
        1,
    )
    .await;
    reader
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_fill_is_taken_over_and_its_readers_elsewhere_get_verified_bytes() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let mut fleet = Fleet::start(&up, Some(&s3), 2, "");
    let blob = up.images().big.largest_blob().clone();
    up.set_rate(Some(8 << 20));
    let first = tokio::spawn({
        let url = format!("{}/v2/library/big/blobs/{}", fleet.url(0), blob.digest);
        async move { reqwest::get(url).await.map(|r| r.status()) }
    });
    // Replica 1 streams it from replica 0, which is then killed.
    let waiter = reader_from_peer(&up, &fleet, &blob).await;
    fleet.replicas[0].kill9();
    let _ = first.await;
    up.set_rate(None);
    // Replica 1 goes on from upstream from the byte it reached.
    tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the waiter is served")
        .unwrap();
    assert_eq!(up.count("GET", &blob.digest), 2, "{:#?}", up.requests());
    assert_eq!(
        metric(
            &fleet.replicas[1],
            "berth_cluster_events_total{event=\"peer_failed\"}"
        )
        .await,
        1
    );
    let resumed = up
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains(&blob.digest))
        .any(|r| r.header_names.iter().any(|h| h == "range"));
    assert!(
        resumed,
        "the takeover asked for the rest only: {:#?}",
        up.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_serve_on_while_redis_is_down_and_rejoin_when_it_is_back() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let mut fleet = Fleet::start(&up, Some(&s3), 2, "");
    let image = up.images().small.clone();
    let dest = tempfile::tempdir().unwrap();
    for r in &fleet.replicas {
        until_metric(r, "berth_cluster_redis_up", 1).await;
    }
    fleet.redis.stop();
    for r in &fleet.replicas {
        until_metric(r, "berth_cluster_redis_up", 0).await;
    }
    // Each replica serves on its own.
    fleet
        .pull_through_each("small", &image, dest.path(), "down", 2)
        .await;
    for i in 0..2 {
        assert!(
            fleet.replicas[i].logged("Redis does not answer"),
            "{}",
            fleet.replicas[i].log()
        );
    }
    // Back (empty, as a Redis that lost its data): the replicas rejoin
    // without a request, and share again.
    fleet.redis.start_again();
    for r in &fleet.replicas {
        until_metric(r, "berth_cluster_redis_up", 1).await;
        assert!(r.logged("Redis answers again"), "{}", r.log());
    }
    up.reset_requests();
    let other = up.images().big.clone();
    fleet
        .pull_through_each("big", &other, dest.path(), "back", 2)
        .await;
    assert_eq!(
        up.count_path("/manifests/latest"),
        1,
        "{:#?}",
        up.requests()
    );
}

/// Send `signal` (`STOP`, `CONT`) to process `pid`.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_frozen_mid_fill_is_taken_over_and_publishes_nothing_wrong_when_it_wakes() {
    let up = TestRegistry::start().await;
    let s3 = S3Server::start();
    let fleet = Fleet::start(&up, Some(&s3), 2, "");
    let blob = up.images().big.largest_blob().clone();
    up.set_rate(Some(8 << 20));
    let frozen_client = tokio::spawn(get_verified(
        format!("{}/v2/library/big/blobs/{}", fleet.url(0), blob.digest),
        blob.digest.clone(),
    ));
    let reader = reader_from_peer(&up, &fleet, &blob).await;
    signal(fleet.replicas[0].pid(), "STOP");
    up.set_rate(None);
    // Replica 0 sends nothing more: replica 1 gives up on it and goes on
    // from upstream; its client gets verified bytes.
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reader elsewhere is served")
        .unwrap();
    assert_eq!(
        metric(
            &fleet.replicas[1],
            "berth_cluster_events_total{event=\"peer_failed\"}"
        )
        .await,
        1
    );
    // Woken up, replica 0 finishes its own download: its client gets
    // verified bytes, and the one object stays the blob's bytes.
    signal(fleet.replicas[0].pid(), "CONT");
    tokio::time::timeout(Duration::from_secs(60), frozen_client)
        .await
        .expect("the frozen replica's client is served")
        .unwrap();
    let key = format!("blobs/sha256/{}", blob.digest.trim_start_matches("sha256:"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s3.object(&key).is_none() {
        assert!(std::time::Instant::now() < deadline, "{:?}", s3.keys());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sha256(&s3.object(&key).unwrap()), blob.digest);
    // The woken replica finds its lease lost before it commits (the
    // fence): of the two, exactly one stored the blob, and no upload is
    // left open.
    until_metric(
        &fleet.replicas[0],
        "berth_cluster_events_total{event=\"lease_lost_before_commit\"}",
        1,
    )
    .await;
    let ended = |line: &&str| {
        line.contains(&blob.digest)
            && (line.contains("blob cached") || line.contains("not stored again"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let logs: Vec<String> = fleet.replicas.iter().map(|r| r.log()).collect();
        if logs.iter().all(|log| log.lines().any(|l| ended(&l))) {
            break logs;
        }
        assert!(std::time::Instant::now() < deadline, "{logs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stored: usize = logs
        .iter()
        .map(|log| {
            log.lines()
                .filter(|l| l.contains(&blob.digest) && l.contains("blob cached"))
                .count()
        })
        .sum();
    assert_eq!(stored, 1, "{logs:?}");
    assert!(
        logs[0].contains("not stored again"),
        "the woken replica stored nothing: {}",
        logs[0]
    );
    s3.until_no_upload_open().await;
    assert_eq!(sha256(&s3.object(&key).unwrap()), blob.digest);
}
