//! What a hostile upstream or a hostile client sends must not change what
//! other clients get, nor grow berth's requests, files or memory without
//! bound: lying manifest types, junk `Accept` types, storms of requests for
//! missing blobs, malformed tag lists and Host names that name no upstream.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::checks::sha256;
use common::fake_upstream::{Canned, FakeUpstream};
use common::{Berth, upstream_toml};

const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A Docker schema-2 manifest, as Docker Hub serves `library/small`.
const DOCKER_MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;

fn serve_manifest(fake: &FakeUpstream, content_type: &'static str) {
    fake.route(
        "proj/app/manifests/latest",
        Canned {
            body: Bytes::from_static(DOCKER_MANIFEST),
            content_type,
            ..Canned::default()
        },
    );
}

async fn content_type(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .header("accept", DOCKER_V2)
        .send()
        .await
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), ct)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_upstream_cannot_poison_the_media_type_of_another() {
    let good = FakeUpstream::start().await;
    let evil = FakeUpstream::start().await;
    serve_manifest(&good, DOCKER_V2);
    // The exact same bytes, with a Content-Type that contradicts them.
    serve_manifest(&evil, OCI_INDEX);
    let config = format!(
        "{}{}",
        upstream_toml("good.test", &good.url, "default = true"),
        upstream_toml("evil.test", &evil.url, "")
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let berth = Berth::start_with_data(&config, &data);
    let digest = sha256(DOCKER_MANIFEST);
    let by_tag = format!("{}/v2/proj/app/manifests/latest", berth.url());
    let by_digest = format!("{}/v2/proj/app/manifests/{digest}", berth.url());
    assert_eq!(content_type(&by_tag).await, (200, DOCKER_V2.to_owned()));

    // The lying answer is refused, and not cached.
    let lied = content_type(&format!(
        "{}/v2/evil.test/proj/app/manifests/latest",
        berth.url()
    ))
    .await;
    assert_eq!(lied.0, 502, "{lied:?}");
    assert_eq!(evil.count("/manifests/latest"), 1);

    for url in [&by_digest, &by_tag] {
        assert_eq!(
            content_type(url).await,
            (200, DOCKER_V2.to_owned()),
            "{url}"
        );
    }
    drop(berth);
    let berth = Berth::start_with_data(&config, &data);
    for path in [
        format!("proj/app/manifests/{digest}"),
        "proj/app/manifests/latest".to_owned(),
    ] {
        let url = format!("{}/v2/{path}", berth.url());
        assert_eq!(
            content_type(&url).await,
            (200, DOCKER_V2.to_owned()),
            "{url}"
        );
    }
    assert_eq!(good.count("/manifests/"), 1, "{:?}", good.requests());
}
