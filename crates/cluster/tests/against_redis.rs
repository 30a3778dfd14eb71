//! The cluster's parts against a real redis-server, in process: a stale
//! tag write refused, a lease named to another replica and taken once
//! given back, the rate limit's burst and refill, the fleet's upstream
//! slots, and every part falling back when Redis is gone.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_access::FleetBuckets as _;
use berth_cache::{IndexStore as _, MemoryIndex, TagAnswer, TagKey, TagRecord};
use berth_cluster::{LeasedFlights, Redis, RedisBuckets, RedisSlots, SharedIndex};
use berth_config::{ClusterSettings, Secret};
use berth_metrics::Metrics;
use berth_pull::{Claim, FlightLock as _};
use berth_testkit::RedisServer;
use berth_upstream::FleetSlots as _;
use std::sync::Arc;
use std::time::Duration;

/// A replica named `node` on `redis`.
fn replica(redis: &RedisServer, node: &str) -> Arc<Redis> {
    let settings = ClusterSettings {
        redis_url: redis.url().parse().unwrap(),
        redis_password: None,
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
