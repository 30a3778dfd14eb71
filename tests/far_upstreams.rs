//! What a cold pull costs upstream, counted at the real token-auth
//! upstream: a new repository gets its token before its first request
//! (no 401), concurrent cold clients share that one token fetch, and each
//! manifest and blob is fetched once.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, Skopeo, Upstream};

/// The token requests the issuer answered for `scope`.
fn token_requests(up: &Upstream, scope: &str) -> usize {
    up.issuer()
        .token_log()
        .iter()
        .filter(|t| t.scopes.iter().any(|s| s == scope))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_pull_of_a_new_repository_costs_one_token_request_and_no_401() {
    let up = Upstream::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "");
    let copy = |image: &'static str| {
        let mirror = berth.addr.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            Skopeo::new()
                .mirror(&mirror)
                .copy_to_dir(image, &dir.path().join("image"))
                .await
                .unwrap();
        }
    };
    // The first pull from this upstream learns its challenge: its only 401.
    copy("docker.io/library/multi:latest").await;
    let refused = up.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "{:?}", up.requests());
    up.reset_requests();
    up.issuer().reset_log();

    // Three clients pull a repository berth has never seen, at once.
    tokio::join!(
        copy("docker.io/library/small:latest"),
        copy("docker.io/library/small:latest"),
        copy("docker.io/library/small:latest"),
    );
    let requests = up.requests();
    assert!(
        requests.iter().all(|r| r.status == 200 && r.authorized),
        "{requests:?}"
    );
    assert_eq!(token_requests(&up, "repository:library/small:pull"), 1);
    assert_eq!(up.issuer().token_log().len(), 1);
    assert_eq!(up.count("GET", "/v2/library/small/manifests/latest"), 1);
    for blob in &small.blobs {
        assert_eq!(up.count("GET", &blob.digest), 1, "{}", blob.digest);
    }
    assert_eq!(requests.len(), 1 + small.blobs.len(), "{requests:?}");
}
