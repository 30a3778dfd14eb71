//! Tag lists are cached per upstream for `list_ttl`, against the real
//! upstream: clients within it cost no upstream request, each page (`n`,
//! `last`) is its own entry, and when upstream fails past it the cached
//! answer is served with a `Warning`. Referrers, which distribution 2.8
//! does not serve, and the TTL boundaries are in the in-process tier
//! (`crates/http/tests/freshness.rs`).
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, TestRegistry};

/// Status, `Warning` and body of a GET.
async fn get(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let r = reqwest::get(url).await.unwrap();
    let warning = r
        .headers()
        .get("warning")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        r.status().as_u16(),
        warning,
        r.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_lists_are_cached_per_page_and_served_stale_in_an_outage() {
    let mut up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "list_ttl = \"1h\"");
    let all = format!("{}/v2/library/small/tags/list", berth.url());
    let page = format!("{all}?n=1&last=latest");
    let (status, _, all_body) = get(&all).await;
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_slice(&all_body).unwrap();
    assert_eq!(listed["tags"], serde_json::json!(["latest", "v1"]));
    let (_, _, page_body) = get(&page).await;
    let paged: serde_json::Value = serde_json::from_slice(&page_body).unwrap();
    assert_eq!(paged["name"], "library/small");
    // Within list_ttl, clients cost nothing upstream.
    for _ in 0..5 {
        assert_eq!(get(&all).await.2, all_body);
        assert_eq!(get(&page).await.2, page_body);
    }
    let fetched = |up: &TestRegistry| {
        up.requests()
            .iter()
            .filter(|r| r.path.ends_with("/tags/list") && r.status == 200)
            .count()
    };
    // One fetch per page, each with its own query.
    assert_eq!(fetched(&up), 2, "{:?}", up.requests());
    let queries: Vec<Option<String>> = up
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/tags/list") && r.status == 200)
        .map(|r| r.query)
        .collect();
    assert_eq!(queries, [None, Some("n=1&last=latest".to_owned())]);

    // Upstream down, past list_ttl: each page as last seen, marked stale.
    up.stop();
    berth.reconfigure("list_ttl = \"1h\"", "list_ttl = \"0s\"");
    for (url, body) in [(&all, &all_body), (&page, &page_body)] {
        let (status, warning, served) = get(url).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(&served, body);
        assert!(warning.is_some_and(|w| w.starts_with("110 ")), "{url}");
    }
    // A page never fetched has nothing to fall back on.
    let (status, _, _) = get(&format!("{all}?n=5")).await;
    assert!(status >= 500, "{status}");
}
