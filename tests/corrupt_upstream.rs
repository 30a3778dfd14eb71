//! An upstream that serves wrong bytes: nothing is cached, and no client
//! receives a complete body that passes as valid.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::Layout;
use berth_testkit::checks::{pseudo_random, sha256 as sha};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};
use bytes::Bytes;
use std::time::Duration;

async fn setup() -> (FakeUpstream, Berth) {
    let fake = FakeUpstream::start().await;
    let berth = Berth::start(&upstream_toml("fake.test", &fake.url, "default = true"));
    (fake, berth)
}

fn cached_blob_exists(berth: &Berth, digest: &str) -> bool {
    berth_testkit::checks::cached(&berth.data_dir, digest)
}

fn tmp_is_empty(berth: &Berth) -> bool {
    std::fs::read_dir(Layout::new(&berth.data_dir).tmp())
        .unwrap()
        .count()
        == 0
}

/// Read a body to the end; `Err` with the bytes received if it broke off.
async fn read_body(response: reqwest::Response) -> Result<Vec<u8>, Vec<u8>> {
    let mut response = response;
    let mut got = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return Ok(got),
            Err(_) => return Err(got),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_blob_bytes_are_never_cached_nor_served_whole() {
    let (fake, berth) = setup().await;
    let claimed = pseudo_random(4 << 20, 1);
    let served = pseudo_random(4 << 20, 2);
    let digest = sha(&claimed);
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: Bytes::from(served),
            content_type: "application/octet-stream",
            digest_header: None,
            pieces: 8,
            pause: Duration::from_millis(40),
            ..Canned::default()
        },
    );
    let url = format!("{}/v2/proj/app/blobs/{digest}", berth.url());
    let client = reqwest::Client::new();
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (client, url) = (client.clone(), url.clone());
        readers.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.content_length(), Some(4 << 20));
            read_body(response).await
        }));
    }
    for r in readers {
        match r.await.unwrap() {
            Ok(body) => panic!("a client received a complete body of {} bytes", body.len()),
            Err(partial) => assert!(partial.len() < 4 << 20),
        }
    }
    assert_eq!(
        fake.count("GET /v2/proj/app/blobs/"),
        1,
        "{:?}",
        fake.requests()
    );
    assert!(!cached_blob_exists(&berth, &digest));
    assert!(tmp_is_empty(&berth));

    // Nothing was cached: the next request goes upstream again, and fails again.
    let response = client.get(&url).send().await.unwrap();
    assert!(read_body(response).await.is_err());
    assert_eq!(fake.count("GET /v2/proj/app/blobs/"), 2);
    assert!(
        berth.log().contains("blob download failed; nothing cached"),
        "{}",
        berth.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_manifest_bytes_by_digest_get_502_and_no_cache() {
    let (fake, berth) = setup().await;
    let claimed =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let digest = sha(claimed);
    fake.route(
        &format!("proj/app/manifests/{digest}"),
        Canned {
            body: Bytes::from_static(br#"{"schemaVersion":2,"evil":true}"#),
            content_type: "application/vnd.oci.image.manifest.v1+json",
            digest_header: Some(digest.clone()),
            pieces: 1,
            pause: Duration::ZERO,
            ..Canned::default()
        },
    );
    let url = format!("{}/v2/proj/app/manifests/{digest}", berth.url());
    for attempt in 1..=2 {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 502);
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("does not match"), "{message}");
        assert_eq!(fake.count("/manifests/"), attempt);
    }
    assert!(!cached_blob_exists(&berth, &digest));
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_answer_whose_digest_header_lies_is_refused() {
    let (fake, berth) = setup().await;
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let lie = sha(b"something else");
    fake.route(
        "proj/app/manifests/latest",
        Canned {
            body: Bytes::from_static(body),
            content_type: "application/vnd.oci.image.manifest.v1+json",
            digest_header: Some(lie),
            pieces: 1,
            pause: Duration::ZERO,
            ..Canned::default()
        },
    );
    let response = reqwest::get(format!("{}/v2/proj/app/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(!cached_blob_exists(&berth, &sha(body)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_answer_for_a_non_empty_blob_is_an_error() {
    let (fake, berth) = setup().await;
    let digest = sha(b"not empty");
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            content_type: "application/octet-stream",
            ..Canned::default()
        },
    );
    let response = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(!cached_blob_exists(&berth, &digest));
}
