//! The fast tier for time: tag answers (`tag_ttl`) and listings
//! (`list_ttl`) are fresh for their TTL, revalidated after it, and served
//! stale with a `Warning` when upstream fails after it. The engine's clock
//! is a [`ManualClock`], moved past a TTL instead of waiting for it.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mirror;

use axum::Router;
use axum::body::Body;
use berth_cache::{MemoryIndex, MemoryStore};
use berth_pull::{ManualClock, Surroundings};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

/// A mirror of `fake` with the upstream keys `extra`, whose freshness runs
/// on `clock`.
fn mirror(fake: &FakeUpstream, extra: &str, clock: &Arc<ManualClock>) -> Router {
    let surroundings = Surroundings {
        clock: clock.clone(),
        ..Surroundings::default()
    };
    let (blobs, index) = (MemoryStore::new(64 << 20), MemoryIndex::default());
    mirror::mirror(fake, extra, Arc::new(blobs), Arc::new(index), surroundings)
}

/// Status, `Warning` header and body of a GET.
async fn get(mirror: &Router, path: &str) -> (StatusCode, Option<String>, Bytes) {
    let response = mirror
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let warning = parts
        .headers
        .get("warning")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        parts.status,
        warning,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn is_stale(warning: Option<&str>) -> bool {
    warning.is_some_and(|w| w.starts_with("110 "))
}

const TAG: &str = "/v2/proj/app/manifests/latest";

/// Serve [`FakeUpstream::MANIFEST`] as `proj/app:<tag>` with its
/// `Docker-Content-Digest`, as a registry answers a HEAD.
fn manifest(fake: &FakeUpstream, tag: &str) {
    fake.route(
        &format!("proj/app/manifests/{tag}"),
        Canned {
            body: Bytes::from_static(FakeUpstream::MANIFEST),
            content_type: "application/vnd.oci.image.manifest.v1+json",
            digest_header: Some(berth_testkit::checks::sha256(FakeUpstream::MANIFEST)),
            ..Canned::default()
        },
    );
}

#[tokio::test]
async fn a_tag_is_fresh_for_its_ttl_then_revalidated_with_a_head() {
    let fake = FakeUpstream::start().await;
    manifest(&fake, "latest");
    let clock = Arc::new(ManualClock::new());
    let mirror = mirror(&fake, "tag_ttl = \"10m\"", &clock);
    assert_eq!(get(&mirror, TAG).await.0, StatusCode::OK);
    assert_eq!(fake.count("GET /v2/proj/app/manifests/latest"), 1);

    // Within tag_ttl, answers cost nothing upstream.
    clock.advance(Duration::from_secs(599));
    fake.reset_requests();
    for _ in 0..3 {
        let (status, warning, body) = get(&mirror, TAG).await;
        assert_eq!(
            (status, warning, &body[..]),
            (StatusCode::OK, None, FakeUpstream::MANIFEST)
        );
    }
    assert_eq!(fake.count("/manifests/"), 0, "{:?}", fake.requests());

    // Just past it, one HEAD confirms the tag, and the body comes from the
    // cache; then the tag is fresh again.
    clock.advance(Duration::from_secs(2));
    for _ in 0..3 {
        assert_eq!(get(&mirror, TAG).await.2, FakeUpstream::MANIFEST);
    }
    let asked: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.contains("/manifests/"))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].starts_with("HEAD /v2/proj/app/manifests/latest"),
        "{asked:?}"
    );
}

#[tokio::test]
async fn past_its_ttl_a_tag_is_served_stale_in_an_outage_and_not_before() {
    let fake = FakeUpstream::start().await;
    manifest(&fake, "latest");
    let clock = Arc::new(ManualClock::new());
    let mirror = mirror(&fake, "tag_ttl = \"1m\"", &clock);
    assert_eq!(get(&mirror, TAG).await.0, StatusCode::OK);

    // Within the TTL an outage is not even noticed: fresh, no Warning.
    fake.set_status_all(Some(503));
    let (status, warning, _) = get(&mirror, TAG).await;
    assert_eq!((status, warning), (StatusCode::OK, None));

    clock.advance(Duration::from_secs(61));
    let (status, warning, body) = get(&mirror, TAG).await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_stale(warning.as_deref()), "{warning:?}");
    assert_eq!(&body[..], FakeUpstream::MANIFEST);
    // A tag never fetched has nothing to fall back on.
    manifest(&fake, "other");
    let (status, _, _) = get(&mirror, "/v2/proj/app/manifests/other").await;
    assert!(status.is_server_error(), "{status}");
}

#[tokio::test]
async fn a_removed_tag_is_kept_only_with_stale_on_not_found() {
    let fake = FakeUpstream::start().await;
    manifest(&fake, "latest");
    let clock = Arc::new(ManualClock::new());
    let opted_in = mirror(&fake, "tag_ttl = \"1m\"\nstale_on_not_found = true", &clock);
    let strict = mirror(&fake, "tag_ttl = \"1m\"", &clock);
    for m in [&opted_in, &strict] {
        assert_eq!(get(m, TAG).await.0, StatusCode::OK);
    }
    fake.set_status_all(Some(404));
    clock.advance(Duration::from_secs(61));
    let (status, warning, body) = get(&opted_in, TAG).await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_stale(warning.as_deref()), "{warning:?}");
    assert_eq!(&body[..], FakeUpstream::MANIFEST);
    assert_eq!(get(&strict, TAG).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listings_are_fresh_for_list_ttl_per_page_then_stale_in_an_outage() {
    let fake = FakeUpstream::start().await;
    let tags = br#"{"name":"proj/app","tags":["a","b"]}"#;
    fake.route(
        "proj/app/tags/list",
        Canned {
            body: Bytes::from_static(tags),
            content_type: "application/json",
            ..Canned::default()
        },
    );
    let subject = berth_testkit::checks::sha256(b"subject");
    let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    fake.route(
        &format!("proj/app/referrers/{subject}"),
        Canned {
            body: Bytes::from_static(index.as_bytes()),
            content_type: "application/vnd.oci.image.index.v1+json",
            ..Canned::default()
        },
    );
    let clock = Arc::new(ManualClock::new());
    let mirror = mirror(&fake, "list_ttl = \"30s\"", &clock);
    let pages = [
        ("/v2/proj/app/tags/list".to_owned(), &tags[..]),
        ("/v2/proj/app/tags/list?n=1&last=a".to_owned(), &tags[..]),
        (
            format!("/v2/proj/app/referrers/{subject}"),
            index.as_bytes(),
        ),
    ];
    for _ in 0..3 {
        for (path, body) in &pages {
            let (status, warning, served) = get(&mirror, path).await;
            assert_eq!(
                (status, warning, &served[..]),
                (StatusCode::OK, None, *body),
                "{path}"
            );
        }
    }
    // One fetch per page, each with its own query.
    assert_eq!(
        fake.count("GET /v2/proj/app/tags/list "),
        1,
        "{:?}",
        fake.requests()
    );
    assert_eq!(fake.count("GET /v2/proj/app/tags/list?n=1&last=a "), 1);
    assert_eq!(fake.count("/referrers/"), 1);

    fake.set_status_all(Some(503));
    clock.advance(Duration::from_secs(31));
    for (path, body) in &pages {
        let (status, warning, served) = get(&mirror, path).await;
        assert_eq!((status, &served[..]), (StatusCode::OK, *body), "{path}");
        assert!(is_stale(warning.as_deref()), "{path}: {warning:?}");
    }
    assert!(
        fake.count("GET /v2/proj/app/tags/list ") > 1,
        "upstream was not asked again"
    );
    // A page never fetched has nothing to fall back on.
    let (status, _, _) = get(&mirror, "/v2/proj/app/tags/list?n=5").await;
    assert!(status.is_server_error(), "{status}");
}
