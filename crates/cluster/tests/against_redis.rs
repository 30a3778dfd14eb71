//! The cluster's parts against a real redis-server, in process: a stale
//! tag write refused, a lease named to another replica and taken once
//! given back, a lost lease noticed before a commit, the rate limit's
//! burst and refill, the fleet's upstream
//! slots, every part falling back when Redis is gone, and Redis over TLS
//! trusted through the configured CA only.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_access::FleetBuckets as _;
use berth_cache::{IndexStore as _, MemoryIndex, TagAnswer, TagKey, TagRecord};
use berth_cluster::{LeasedFlights, Redis, RedisBuckets, RedisSlots, SharedIndex};
use berth_config::{ClusterSettings, Secret};
use berth_metrics::Metrics;
use berth_pull::{Claim, FlightLock as _};
use berth_testkit::RedisServer;
use berth_testkit::tls::TestCa;
use berth_upstream::FleetSlots as _;
use std::sync::Arc;
use std::time::Duration;

/// A replica named `node` on `redis`.
fn replica(redis: &RedisServer, node: &str) -> Arc<Redis> {
    replica_trusting(redis, node, None)
}

/// A replica named `node` on `redis`, trusting the CA file `ca` for TLS.
fn replica_trusting(redis: &RedisServer, node: &str, ca: Option<&std::path::Path>) -> Arc<Redis> {
    let settings = ClusterSettings {
        redis_url: redis.url().parse().unwrap(),
        redis_password: None,
        redis_ca: ca.map(|file| (std::fs::read(file).unwrap(), file.to_owned())),
        node_url: node.parse().unwrap(),
        secret: Secret::new("a-cluster-secret-for-tests"),
        secret_file: "/nonexistent".into(),
        lease: Duration::from_secs(2),
    };
    Redis::new(&settings, Arc::new(Metrics::new())).unwrap()
}

fn record(digest: &str, at_ms: u64) -> TagRecord {
    TagRecord {
        answers: vec![TagAnswer {
            accept: "*".to_owned(),
            digest: digest.to_owned(),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            size: 1,
            checked_at_ms: at_ms,
        }],
    }
}

#[tokio::test]
async fn a_tag_write_older_than_the_shared_one_does_not_move_it_back() {
    let redis = RedisServer::start();
    let (a, b) = (
        SharedIndex::new(
            replica(&redis, "http://a:1"),
            Arc::new(MemoryIndex::default()),
        ),
        SharedIndex::new(
            replica(&redis, "http://b:1"),
            Arc::new(MemoryIndex::default()),
        ),
    );
    let key = TagKey {
        upstream: "docker.io".to_owned(),
        repo: "library/x".to_owned(),
        tag: "latest".to_owned(),
    };
    a.put_tag(&key, record("sha256:new", 2_000)).await.unwrap();
    // B wakes up with an answer from before A's.
    b.put_tag(&key, record("sha256:old", 1_000)).await.unwrap();
    let seen = b.tag(&key).await.unwrap().unwrap();
    assert_eq!(seen.answers[0].digest, "sha256:new");
}

#[tokio::test]
async fn a_held_lease_names_its_holder_and_is_taken_once_given_back() {
    let redis = RedisServer::start();
    let a = LeasedFlights::new(replica(&redis, "http://a:1"), Duration::from_secs(2));
    let b = LeasedFlights::new(replica(&redis, "http://b:1"), Duration::from_secs(2));
    let Claim::Mine(held) = a.claim("blob sha256:x").await else {
        panic!("the first claim is mine")
    };
    match b.claim("blob sha256:x").await {
        Claim::Elsewhere(node) => assert_eq!(node, "http://a:1"),
        Claim::Mine(_) => panic!("two holders"),
    }
    drop(held);
    let taken = tokio::time::timeout(Duration::from_secs(5), b.lock("blob sha256:x"))
        .await
        .expect("given back");
    drop(taken);
}

#[tokio::test]
async fn a_lease_lost_while_held_is_noticed_before_a_commit() {
    let redis = RedisServer::start();
    let a = LeasedFlights::new(replica(&redis, "http://a:1"), Duration::from_secs(2));
    let b = LeasedFlights::new(replica(&redis, "http://b:1"), Duration::from_secs(2));
    let Claim::Mine(first) = a.claim("blob sha256:x").await else {
        panic!("the first claim is mine")
    };
    assert_eq!(first.still_held().await, Some(true));
    // The lease runs out under A (as when A is paused for longer than
    // it): B takes the flight over.
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let leases: Vec<String> = redis::AsyncCommands::keys(&mut raw, "berth:lease:*")
        .await
        .unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    let _: i64 = redis::AsyncCommands::del(&mut raw, &leases[0])
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), b.lock("blob sha256:x"))
        .await
        .expect("the lease is free");
    assert_eq!(first.still_held().await, Some(false));
    assert_eq!(second.still_held().await, Some(true));
    // A giving up its lost lease leaves B's alone.
    drop(first);
    let still: Option<String> = redis::AsyncCommands::get(&mut raw, &leases[0])
        .await
        .unwrap();
    assert!(still.is_some_and(|v| v.starts_with("http://b:1 ")));
    assert_eq!(second.still_held().await, Some(true));
}

#[tokio::test]
async fn the_shared_rate_limit_gives_its_burst_then_refuses() {
    let redis = RedisServer::start();
    let buckets = RedisBuckets::new(replica(&redis, "http://a:1"));
    let other = RedisBuckets::new(replica(&redis, "http://b:1"));
    // One a second with a burst of 2: three at once, whichever replica.
    assert_eq!(buckets.take("ip:1.2.3.4", 1, 2).await, Some(Ok(())));
    assert_eq!(other.take("ip:1.2.3.4", 1, 2).await, Some(Ok(())));
    assert_eq!(buckets.take("ip:1.2.3.4", 1, 2).await, Some(Ok(())));
    let Some(Err(wait)) = other.take("ip:1.2.3.4", 1, 2).await else {
        panic!("the fourth passed")
    };
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    // Another key has its own bucket; one given back can be taken again.
    assert_eq!(buckets.take("ip:5.6.7.8", 1, 2).await, Some(Ok(())));
    buckets.give_back("ip:1.2.3.4", 1).await;
    assert_eq!(buckets.take("ip:1.2.3.4", 1, 2).await, Some(Ok(())));
}

#[tokio::test]
async fn the_fleet_slots_hold_their_cap_and_free_on_drop() {
    let redis = RedisServer::start();
    let a = RedisSlots::new(replica(&redis, "http://a:1"), Duration::from_secs(2));
    let b = RedisSlots::new(replica(&redis, "http://b:1"), Duration::from_secs(2));
    let first = a.acquire("docker.io", 1).await.expect("a slot");
    let waiting = tokio::time::timeout(Duration::from_millis(300), b.acquire("docker.io", 1)).await;
    assert!(waiting.is_err(), "a second slot of one");
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(5), b.acquire("docker.io", 1))
        .await
        .expect("freed on drop");
    assert!(second.is_some());
}

#[tokio::test]
async fn without_redis_every_part_says_it_cannot_answer() {
    let mut server = RedisServer::start();
    let redis = replica(&server, "http://a:1");
    server.stop();
    assert_eq!(
        RedisBuckets::new(Arc::clone(&redis))
            .take("ip:1.2.3.4", 1, 0)
            .await,
        None
    );
    assert!(
        RedisSlots::new(Arc::clone(&redis), Duration::from_secs(2))
            .acquire("docker.io", 1)
            .await
            .is_none()
    );
    let flights = LeasedFlights::new(Arc::clone(&redis), Duration::from_secs(2));
    assert!(matches!(flights.claim("k").await, Claim::Mine(_)));
    assert!(!redis.is_up());
    assert!(redis.ping().await.is_err());
}

#[tokio::test]
async fn over_tls_redis_is_trusted_through_the_configured_ca_only() {
    let ca = TestCa::new();
    let server = RedisServer::start_tls(&ca);
    let trusting = replica_trusting(&server, "http://a:1", Some(&ca.ca_file()));
    trusting.ping().await.unwrap();
    let flights = LeasedFlights::new(Arc::clone(&trusting), Duration::from_secs(2));
    let Claim::Mine(held) = flights.claim("blob sha256:x").await else {
        panic!("the first claim is mine")
    };
    assert_eq!(held.still_held().await, Some(true));
    assert!(trusting.is_up());
    // A certificate from another CA is refused, and so is the system's
    // trust when no CA is configured.
    let stranger = TestCa::new();
    let wary = replica_trusting(&server, "http://b:1", Some(&stranger.ca_file()));
    let e = wary.ping().await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let system = replica_trusting(&server, "http://c:1", None);
    assert!(system.ping().await.is_err());
}
