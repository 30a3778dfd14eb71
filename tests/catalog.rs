//! `/v2/_catalog` against the real upstream: the repositories whose tags
//! berth cached, in order, a page at a time, without those the access
//! rules refuse the caller.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, TestRegistry};

/// GET `url`: status, the `Link` header, and the repositories listed.
async fn page(url: &str) -> (u16, Option<String>, Vec<String>) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let link = r
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let names = body["repositories"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (status, link, names)
}

/// Pull the manifests of `library/small` and `library/big` through `berth`.
async fn cache_two(berth: &Berth, up: &TestRegistry) {
    for image in [&up.images().small, &up.images().big] {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/v2/library/{}/manifests/latest",
                berth.url(),
                image.repository.trim_start_matches("library/")
            ))
            .header("accept", &image.media_type)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", berth.log());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_lists_cached_repositories_a_page_at_a_time() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    let (status, link, names) = page(&format!("{}/v2/_catalog", berth.url())).await;
    assert_eq!((status, link, names), (200, None, Vec::<String>::new()));
    cache_two(&berth, &up).await;

    let (status, link, names) = page(&format!("{}/v2/_catalog", berth.url())).await;
    assert_eq!(status, 200);
    assert_eq!(names, ["library/big", "library/small"]);
    assert_eq!(link, None);
    // One at a time, following the Link.
    let (_, link, names) = page(&format!("{}/v2/_catalog?n=1", berth.url())).await;
    assert_eq!(names, ["library/big"]);
    let next = link.expect("a Link to the next page");
    assert_eq!(next, "</v2/_catalog?n=1&last=library%2Fbig>; rel=\"next\"");
    let path = next.trim_start_matches('<').split('>').next().unwrap();
    let (_, link, names) = page(&format!("{}{path}", berth.url())).await;
    assert_eq!((link, names), (None, vec!["library/small".to_owned()]));
    // The list is what berth holds: upstream's catalog is never asked for.
    assert!(
        up.requests().iter().all(|r| !r.path.contains("_catalog")),
        "{:?}",
        up.requests()
    );

    let r = reqwest::get(format!("{}/v2/_catalog?n=many", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("PAGINATION_NUMBER_INVALID"),
        "a bad n is refused by name"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_the_rules_refuse_is_not_listed() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    cache_two(&berth, &up).await;
    // A rule arrives that refuses library/big.
    let path = berth.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}\n[[access.rules]]\nname = \"no-big\"\naction = \"deny\"\nrepository = \"^library/big$\"\n"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !berth.log().contains("configuration reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, _, names) = page(&format!("{}/v2/_catalog", berth.url())).await;
    assert_eq!(status, 200);
    assert_eq!(names, ["library/small"]);
}
