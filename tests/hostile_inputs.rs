//! What a hostile upstream or a hostile client sends must not change what
//! other clients get, nor grow berth's requests, files or memory without
//! bound: lying manifest types, junk `Accept` types, storms of requests for
//! missing blobs, malformed tag lists and Host names that name no upstream.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit as testkit;

use berth_testkit::checks::sha256;
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};
use bytes::Bytes;

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

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Tag answers berth keeps on disk.
fn index_files(berth: &Berth) -> usize {
    std::fs::read_dir(berth.data_dir.join("index/tags"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of a process in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb << 10
}

/// GET the cached tag `n` times, concurrently, with the Accept lines
/// `accept(i)` for request `i`; every answer must be the manifest.
async fn pull_tag_with(berth: &Berth, n: usize, accept: impl Fn(usize) -> Vec<String>) {
    use futures_util::StreamExt as _;
    let client = reqwest::Client::new();
    let url = format!("{}/v2/proj/app/manifests/latest", berth.url());
    futures_util::stream::iter(0..n)
        .map(|i| {
            let mut request = client.get(&url);
            for line in accept(i) {
                request = request.header("accept", line);
            }
            async move {
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.bytes().await.unwrap(), FakeUpstream::MANIFEST);
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_accept_types_cause_no_upstream_requests_files_or_memory() {
    let fake = FakeUpstream::start().await;
    fake.manifest("latest");
    let berth = Berth::start(&upstream_toml("fake.test", &fake.url, "default = true"));
    pull_tag_with(&berth, 1, |_| vec![OCI_MANIFEST.to_owned()]).await;
    assert_eq!(fake.count("GET /v2/proj/app/manifests/latest"), 1);
    let files = index_files(&berth);

    // Each request adds one junk type, as a line of its own or in the list.
    pull_tag_with(&berth, 3_000, |i| {
        if i % 2 == 0 {
            vec![OCI_MANIFEST.to_owned(), format!("application/x-junk-{i}")]
        } else {
            vec![format!("application/x-junk-{i}; q=0.{i}, {OCI_MANIFEST}")]
        }
    })
    .await;
    assert_eq!(
        fake.count("GET /v2/proj/app/manifests/latest"),
        1,
        "junk Accept types went upstream"
    );
    assert_eq!(index_files(&berth), files, "junk Accept types wrote files");

    // A huge Accept header is not kept.
    let before = rss(berth.pid());
    pull_tag_with(&berth, 900, |i| {
        let junk: Vec<String> = (0..4_000)
            .map(|j| format!("application/x-{i}-{j}-{}", "z".repeat(40)))
            .collect();
        vec![format!("{OCI_MANIFEST}, {}", junk.join(", "))]
    })
    .await;
    let grown = rss(berth.pid()).saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
    assert_eq!(fake.count("GET /v2/proj/app/manifests/latest"), 1);
    assert_eq!(index_files(&berth), files);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_blob_is_asked_for_once_within_not_found_ttl() {
    use futures_util::StreamExt as _;
    let fake = FakeUpstream::start().await;
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nnot_found_ttl = \"1m\"",
    ));
    let digest = sha256(b"nowhere");
    let url = format!("{}/v2/proj/app/blobs/{digest}", berth.url());
    let client = reqwest::Client::new();
    let statuses: Vec<u16> = futures_util::stream::iter(0..2_000)
        .map(|_| {
            let request = client.get(&url);
            async move { request.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 404), "{statuses:?}");
    let asked = fake.count("GET /v2/proj/app/blobs/");
    assert_eq!(asked, 1, "{asked} upstream GETs for one missing blob");
    for _ in 0..100 {
        assert_eq!(client.head(&url).send().await.unwrap().status(), 404);
    }
    assert_eq!(fake.count("/blobs/"), 1, "{:?}", fake.requests());
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(testkit::checks::oci_error(r).await.0, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_lists_must_be_json_and_keep_only_relative_next_links() {
    let fake = FakeUpstream::start().await;
    // Each request sees upstream's current answer: nothing is kept.
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &fake.url,
        "default = true\nlist_ttl = \"0s\"",
    ));
    let url = format!("{}/v2/proj/app/tags/list", berth.url());
    let serve = |body: &'static str, link: Option<&str>| {
        fake.route(
            "proj/app/tags/list",
            Canned {
                body: Bytes::from_static(body.as_bytes()),
                content_type: "text/html",
                headers: link.map(|l| ("link", l.to_owned())).into_iter().collect(),
                ..Canned::default()
            },
        );
    };
    let list = r#"{"name":"proj/app","tags":["a","b"]}"#;
    for junk in [
        "<html><script>alert(1)</script></html>",
        r#"{"name":"proj/app","tags":"a"}"#,
        r#"{"name":"proj/app","tags":["../../etc"]}"#,
    ] {
        serve(junk, None);
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 502, "{junk}");
        assert_eq!(testkit::checks::oci_error(r).await.0, "UNAVAILABLE");
    }
    for (link, kept) in [
        (
            r#"<http://evil.example/v2/proj/app/tags/list?n=2&last=b>; rel="next""#,
            None,
        ),
        (r#"</v2/proj/app/tags/list?n=2&last=b>; rel="prev""#, None),
        (
            r#"</v2/proj/app/tags/list?n=2&last=b&x=y>; rel="next""#,
            Some(r#"<?n=2&last=b>; rel="next""#),
        ),
    ] {
        serve(list, Some(link));
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let got = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), kept, "{link}");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "proj/app", "tags": ["a", "b"]})
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_host_prefix_is_refused_and_the_bare_domain_is_the_default() {
    let hub = FakeUpstream::start().await;
    let other = FakeUpstream::start().await;
    for tag in ["latest", "v1", "v2"] {
        hub.manifest(tag);
        other.manifest(tag);
    }
    let berth = Berth::start(&format!(
        "domain = \"mirror.test\"\n{}{}",
        upstream_toml(
            "docker.io",
            &hub.url,
            "default = true\nhost_prefix = \"docker\""
        ),
        upstream_toml("other.test", &other.url, "host_prefix = \"other\"")
    ));
    let client = reqwest::Client::new();
    let get = |host: &str, tag: &str| {
        client
            .get(format!("{}/v2/proj/app/manifests/{tag}", berth.url()))
            .header("host", host)
            .send()
    };
    for host in [
        "nope.mirror.test",
        "nope.mirror.test:5000",
        "x.other.mirror.test",
    ] {
        let r = get(host, "latest").await.unwrap();
        assert_eq!(r.status(), 404, "{host}");
        assert_eq!(testkit::checks::oci_error(r).await.0, "NAME_UNKNOWN");
    }
    assert!(
        hub.requests_beyond_ping().is_empty(),
        "{:?}",
        hub.requests()
    );
    assert!(
        other.requests_beyond_ping().is_empty(),
        "{:?}",
        other.requests()
    );
    for (host, tag, upstream) in [
        ("mirror.test", "latest", &hub),
        ("docker.mirror.test:5000", "v1", &hub),
        ("other.mirror.test", "v2", &other),
    ] {
        assert_eq!(get(host, tag).await.unwrap().status(), 200, "{host}");
        let asked = upstream.count(&format!("GET /v2/proj/app/manifests/{tag}"));
        assert_eq!(asked, 1, "{host}");
    }
}
