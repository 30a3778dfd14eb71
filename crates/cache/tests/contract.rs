//! The store seam's contract, run against every backend: a lookup misses
//! until a verified write is finished; a hit serves any range as a stream;
//! waiting readers tail a blob while it is written; an aborted or
//! unproven write never becomes visible. A backend that passes these can
//! sit under the pull engine. S3 runs against s3s-fs, started here.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::{BlobBytes, BlobStore, FsStore, Lookup, MemoryStore, S3Store};
use berth_oci::{Digest, DigestVerifier};
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::sync::Arc;

/// What a backend needs kept alive while it is used (its directory, its
/// server).
type KeepAlive = Box<dyn std::any::Any>;

/// Every backend, by name, each over a fresh store: the local disk,
/// memory, and S3 (a real S3-compatible server, s3s-fs, which checks
/// signatures).
fn backends() -> Vec<(&'static str, Arc<dyn BlobStore>, KeepAlive)> {
    let dir = tempfile::tempdir().unwrap();
    let (fs, _) = FsStore::open(dir.path()).unwrap();
    let s3 = berth_testkit::S3Server::start();
    let spools = tempfile::tempdir().unwrap();
    let objects = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_endpoint(&s3.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(&s3.access_key)
        .with_secret_access_key(&s3.secret_key)
        .build()
        .unwrap();
    let s3_store = S3Store::new(
        Arc::new(objects),
        "blobs-test/",
        spools.path().join("spool"),
    )
    .unwrap();
    vec![
        ("fs", Arc::new(fs), Box::new(dir)),
        ("memory", Arc::new(MemoryStore::new(64 << 20)), Box::new(())),
        ("s3", Arc::new(s3_store), Box::new((s3, spools))),
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
async fn only_the_local_disk_offers_a_file_for_sendfile() {
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
