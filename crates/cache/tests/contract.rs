//! The store seam's contract, run against every backend: a lookup misses
//! until a verified write is finished; a hit serves any range as a stream;
//! waiting readers tail a blob while it is written; an aborted or
//! unproven write never becomes visible. A backend that passes these can
//! sit under the pull engine. S3 runs against s3s-fs, started here.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::{BlobBytes, BlobStore, FsStore, Lookup, MemoryStore, S3Store, TieredStore};
use berth_oci::{Digest, DigestVerifier};
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::sync::Arc;

/// What a backend needs kept alive while it is used (its directory, its
/// server).
type KeepAlive = Box<dyn std::any::Any>;

/// An S3 client of `s3`'s bucket.
fn bucket(s3: &berth_testkit::S3Server) -> Arc<dyn object_store::ObjectStore> {
    let objects = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_endpoint(&s3.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(&s3.access_key)
        .with_secret_access_key(&s3.secret_key)
        .build()
        .unwrap();
    Arc::new(objects)
}

/// A store of `s3`'s bucket under `prefix`, its data directory in `dir`.
fn s3_store(s3: &berth_testkit::S3Server, prefix: &str, dir: &std::path::Path) -> S3Store {
    let data_dir = dir.join(format!("data-{}", prefix.trim_end_matches('/')));
    S3Store::new(bucket(s3), prefix, &berth_cache::Layout::new(data_dir)).unwrap()
}

/// A bucket behind a local tier of `capacity` bytes, and a plain view of
/// the same bucket (what another replica would see).
fn tiered(
    s3: &berth_testkit::S3Server,
    dir: &std::path::Path,
    capacity: u64,
) -> (TieredStore, S3Store) {
    let (local, _) = FsStore::open(&dir.join("tier")).unwrap();
    let remote = s3_store(s3, "tiered/", dir);
    let view = s3_store(s3, "tiered/", &dir.join("view"));
    (
        TieredStore::new(Arc::new(local), Arc::new(remote), capacity),
        view,
    )
}

/// Every backend, by name, each over a fresh store: the local disk,
/// memory, S3 (a real S3-compatible server, s3s-fs, which checks
/// signatures), and S3 behind a local tier.
fn backends() -> Vec<(&'static str, Arc<dyn BlobStore>, KeepAlive)> {
    let dir = tempfile::tempdir().unwrap();
    let (fs, _) = FsStore::open(dir.path()).unwrap();
    let s3 = berth_testkit::S3Server::start();
    let spools = tempfile::tempdir().unwrap();
    let s3_store = s3_store(&s3, "blobs-test/", spools.path());
    let (tiered, _) = tiered(&s3, spools.path(), 256 << 20);
    vec![
        ("fs", Arc::new(fs), Box::new(dir)),
        ("memory", Arc::new(MemoryStore::new(64 << 20)), Box::new(())),
        ("s3", Arc::new(s3_store), Box::new(())),
        ("tiered", Arc::new(tiered), Box::new((s3, spools))),
    ]
}

fn blob(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

fn proof(data: &[u8]) -> berth_oci::Verified {
    let mut v = DigestVerifier::new(Digest::of(data));
    v.update(data);
    v.finish().unwrap()
}

async fn collect(bytes: BlobBytes) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = bytes.into_stream();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn a_blob_is_invisible_until_finished_then_served_in_any_range() {
    for (name, store, _dir) in backends() {
        let data = blob(3 << 20, 1);
        let digest = Digest::of(&data);
        assert!(
            matches!(store.lookup(&digest).await.unwrap(), Lookup::Miss),
            "{name}"
        );
        assert_eq!(store.size(&digest).await.unwrap(), None, "{name}");

        store.reserve(data.len() as u64).await.unwrap();
        let mut writer = store.begin(&digest, Some(data.len() as u64)).await.unwrap();
        writer
            .write(&[data.slice(..1000), data.slice(1000..)])
            .unwrap();
        assert!(
            matches!(store.lookup(&digest).await.unwrap(), Lookup::Miss),
            "{name}: visible before it was proven"
        );
        writer.finish(proof(&data)).await.unwrap();

        let Lookup::Hit(hit) = store.lookup(&digest).await.unwrap() else {
            panic!("{name}: finished, yet missed");
        };
        assert_eq!(hit.size(), data.len() as u64, "{name}");
        assert_eq!(store.size(&digest).await.unwrap(), Some(data.len() as u64));
        for (start, end) in [
            (0, data.len()),
            (5, 17),
            (1 << 20, (2 << 20) + 3),
            (data.len() - 1, data.len()),
        ] {
            let got = collect(hit.read(start as u64, end as u64).unwrap()).await;
            assert_eq!(got, &data[start..end], "{name}: {start}..{end}");
        }
        assert_eq!(hit.bytes().await.unwrap(), data, "{name}");
    }
}

#[tokio::test]
async fn readers_tail_a_blob_while_it_is_written() {
    for (name, store, _dir) in backends() {
        let data = blob(300_000, 2);
        let digest = Digest::of(&data);
        let mut writer = store.begin(&digest, None).await.unwrap();
        let tail = writer.tail();
        writer.write(&[data.slice(..100_000)]).unwrap();
        assert_eq!(
            &tail.read_at(0, 100_000).await.unwrap()[..],
            &data[..100_000],
            "{name}"
        );
        assert!(
            tail.read_at(50_000, 100_000).await.is_err(),
            "{name}: read past what was written"
        );
        writer.write(&[data.slice(100_000..)]).unwrap();
        assert_eq!(
            &tail.read_at(99_000, 2_000).await.unwrap()[..],
            &data[99_000..101_000],
            "{name}"
        );
        writer.finish(proof(&data)).await.unwrap();
        // The tail outlives its writer.
        assert_eq!(
            &tail.read_at(0, data.len()).await.unwrap()[..],
            &data[..],
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_aborted_or_unproven_write_never_becomes_visible() {
    for (name, store, _dir) in backends() {
        let data = blob(70_000, 3);
        let digest = Digest::of(&data);
        let mut aborted = store.begin(&digest, None).await.unwrap();
        aborted.write(std::slice::from_ref(&data)).unwrap();
        aborted.abort();
        assert!(
            matches!(store.lookup(&digest).await.unwrap(), Lookup::Miss),
            "{name}"
        );

        let mut dropped = store.begin(&digest, None).await.unwrap();
        dropped.write(std::slice::from_ref(&data)).unwrap();
        drop(dropped);
        assert!(
            matches!(store.lookup(&digest).await.unwrap(), Lookup::Miss),
            "{name}"
        );

        let other = blob(10, 4);
        let mut wrong = store.begin(&digest, None).await.unwrap();
        wrong.write(std::slice::from_ref(&other)).unwrap();
        assert!(
            wrong.finish(proof(&other)).await.is_err(),
            "{name}: a proof for another digest"
        );
        assert!(
            matches!(store.lookup(&digest).await.unwrap(), Lookup::Miss),
            "{name}"
        );

        assert!(
            store.put_small(&digest, other).await.is_err(),
            "{name}: bytes of another digest"
        );
        assert!(
            matches!(store.lookup(&digest).await.unwrap(), Lookup::Miss),
            "{name}"
        );
        store.put_small(&digest, data.clone()).await.unwrap();
        let Lookup::Hit(hit) = store.lookup(&digest).await.unwrap() else {
            panic!("{name}: put, yet missed");
        };
        assert_eq!(hit.bytes().await.unwrap(), data, "{name}");
    }
}

#[tokio::test]
async fn only_local_disks_offer_a_file_for_sendfile() {
    for (name, store, _dir) in backends() {
        let data = blob(2 << 20, 5);
        let digest = Digest::of(&data);
        store.put_small(&digest, data.clone()).await.unwrap();
        let Lookup::Hit(hit) = store.lookup(&digest).await.unwrap() else {
            panic!("{name}: put, yet missed");
        };
        let BlobBytes::Span(span) = hit.read(0, data.len() as u64).unwrap() else {
            panic!("{name}: a large range is a span");
        };
        // (The tiered store's put went to its bucket alone.)
        assert_eq!(span.local_file().is_some(), name == "fs", "{name}");
        assert_eq!(collect(BlobBytes::Span(span)).await, data, "{name}");
    }
}

#[tokio::test]
async fn a_blob_larger_than_one_put_is_stored_whole() {
    for (name, store, _keep) in backends() {
        let data = blob((berth_cache::ONE_PUT + (3 << 20)) as usize, 6);
        let digest = Digest::of(&data);
        let mut writer = store.begin(&digest, Some(data.len() as u64)).await.unwrap();
        for piece in data.chunks(1 << 20) {
            writer.write(&[Bytes::copy_from_slice(piece)]).unwrap();
        }
        writer.finish(proof(&data)).await.unwrap();
        let Lookup::Hit(hit) = store.lookup(&digest).await.unwrap() else {
            panic!("{name}: finished, yet missed");
        };
        assert_eq!(hit.size(), data.len() as u64, "{name}");
        let tail_end = data.len() as u64 - 10;
        let got = collect(hit.read(tail_end, data.len() as u64).unwrap()).await;
        assert_eq!(got, &data[tail_end as usize..], "{name}");
        assert_eq!(
            collect(hit.read(0, data.len() as u64).unwrap()).await,
            data,
            "{name}"
        );
    }
}

/// The local file a lookup of `digest` serves from, if it has one.
async fn local_hit(store: &dyn BlobStore, digest: &Digest) -> bool {
    let Lookup::Hit(hit) = store.lookup(digest).await.unwrap() else {
        panic!("missed {digest}");
    };
    let BlobBytes::Span(span) = hit.read(0, hit.size()).unwrap() else {
        panic!("a large range is a span");
    };
    span.local_file().is_some()
}

#[tokio::test]
async fn a_tier_keeps_fills_and_bucket_hits_on_local_disk_and_big_blobs_in_the_bucket_alone() {
    let s3 = berth_testkit::S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, bucket) = tiered(&s3, dir.path(), 16 << 20);

    // A fill: in the bucket (another replica sees it) and in the tier.
    let filled = blob(3 << 20, 7);
    let digest = Digest::of(&filled);
    let mut writer = store
        .begin(&digest, Some(filled.len() as u64))
        .await
        .unwrap();
    writer.write(std::slice::from_ref(&filled)).unwrap();
    writer.finish(proof(&filled)).await.unwrap();
    assert!(matches!(
        bucket.lookup(&digest).await.unwrap(),
        Lookup::Hit(_)
    ));
    assert!(local_hit(&store, &digest).await, "a fill stays in the tier");

    // In the bucket only: served from there, then copied into the tier.
    let remote = blob(2 << 20, 8);
    let digest = Digest::of(&remote);
    bucket.put_small(&digest, remote.clone()).await.unwrap();
    assert!(!local_hit(&store, &digest).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !local_hit(&store, &digest).await {
        assert!(
            std::time::Instant::now() < deadline,
            "never copied into the tier"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let Lookup::Hit(hit) = store.lookup(&digest).await.unwrap() else {
        panic!("missed");
    };
    assert_eq!(hit.bytes().await.unwrap(), remote);

    // Larger than half the tier: the bucket alone.
    let big = blob(9 << 20, 9);
    let digest = Digest::of(&big);
    let mut writer = store.begin(&digest, Some(big.len() as u64)).await.unwrap();
    writer.write(std::slice::from_ref(&big)).unwrap();
    writer.finish(proof(&big)).await.unwrap();
    assert!(matches!(
        bucket.lookup(&digest).await.unwrap(),
        Lookup::Hit(_)
    ));
    assert!(!local_hit(&store, &digest).await);
}
