//! The private-content guard against the real upstream: content is served
//! under a repository only when berth knows that repository references it,
//! so a digest learned from a private repository cannot be fetched under a
//! public name, from upstream or from the cache, before or after an
//! authorised pull, and with upstream up or down.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, Skopeo, TestRegistry};

/// berth with the lab upstream's `puller` credentials: it may read
/// `private/`, and so may every client of it (the operator's choice).
fn berth_with_credentials(up: &TestRegistry) -> Berth {
    let creds = format!(
        "username = \"puller\"\npassword = \"pullpass\"\nrealm_hosts = [\"{}\"]\n",
        up.issuer().addr()
    );
    Berth::hub(&up.url(), &creds)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_digest_is_not_served_under_another_name() {
    let mut up = TestRegistry::start().await;
    let berth = berth_with_credentials(&up);
    let secret = &up.images().private_secret;
    let layer = secret.largest_blob().digest.clone();
    let client = reqwest::Client::new();
    let under = |repo: &str, what: &str| format!("{}/v2/{repo}/{what}", berth.url());

    // An authorised pull puts the private image in the cache.
    let dest = tempfile::tempdir().unwrap();
    Skopeo::new()
        .mirror(&berth.addr)
        .copy_to_dir("docker.io/private/secret:latest", dest.path())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));

    // Under a public name, upstream is asked, and says it has no such
    // blob there: the cached copy is not handed out.
    up.reset_requests();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = client
            .request(
                method.clone(),
                under("library/small", &format!("blobs/{layer}")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} under library/small");
        if method == reqwest::Method::GET {
            let body = r.text().await.unwrap();
            assert!(body.contains("BLOB_UNKNOWN"), "{body}");
        }
    }
    assert!(
        up.count("HEAD", &format!("/v2/library/small/blobs/{layer}")) >= 1,
        "berth did not ask upstream: {:?}",
        up.requests()
    );
    let r = client
        .get(under(
            "library/small",
            &format!("manifests/{}", secret.digest),
        ))
        .header("accept", &secret.media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("MANIFEST_UNKNOWN"));

    // Under its own name it is a hit: no upstream request.
    up.reset_requests();
    let r = client
        .get(under("private/secret", &format!("blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(up.count_path(&layer), 0, "{:?}", up.requests());

    // With upstream down, berth cannot confirm the link, and refuses;
    // the linked name keeps being served.
    up.stop();
    let r = client
        .get(under("library/small", &format!("blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "served while upstream was down");
    assert!(r.status().is_server_error() || r.status() == 404);
    let r = client
        .get(under("private/secret", &format!("blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(berth_testkit::checks::sha256(&bytes), layer);
}

#[tokio::test(flavor = "multi_thread")]
async fn links_are_kept_across_restarts() {
    let mut up = TestRegistry::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = berth_testkit::upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true\n",
    );
    let small = up.images().small.clone();
    let layer = small.largest_blob().digest.clone();
    {
        let berth = Berth::start_with_data(&config, data.path());
        let r = reqwest::Client::new()
            .get(format!("{}/v2/library/small/manifests/latest", berth.url()))
            .header("accept", &small.media_type)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = reqwest::get(format!("{}/v2/library/small/blobs/{layer}", berth.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    up.stop();
    let berth = Berth::start_with_data(&config, data.path());
    let r = reqwest::get(format!("{}/v2/library/small/blobs/{layer}", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", berth.log());
    assert_eq!(r.headers()["x-cache"], "HIT");
}

/// Every file and directory under `dir`, with its mode.
fn modes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        found.push((path.clone(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            found.extend(modes_under(&path));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_private_content_is_readable_by_berths_user_alone() {
    // The most common umask; berth is started with it.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let up = TestRegistry::start().await;
    let berth = berth_with_credentials(&up);
    let dest = tempfile::tempdir().unwrap();
    Skopeo::new()
        .mirror(&berth.addr)
        .copy_to_dir("docker.io/private/secret:latest", dest.path())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    let layer = &up.images().private_secret.largest_blob().digest;
    let modes = modes_under(&berth.data_dir);
    let hex = layer.trim_start_matches("sha256:");
    assert!(
        modes.iter().any(|(p, _)| p.ends_with(hex)),
        "the private layer is not in the store: {modes:?}"
    );
    let open: Vec<_> = modes.iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_upstreams_head_does_not_unlock_content_fetched_with_credentials() {
    use berth_testkit::fake_upstream::{Canned, FakeUpstream};
    let up = TestRegistry::start().await;
    let secret = &up.images().private_secret;
    let layer = secret.largest_blob().digest.clone();
    // A second upstream that claims every digest it is asked about, and
    // has none of the bytes.
    let evil = FakeUpstream::start().await;
    for what in [
        format!("blobs/{layer}"),
        format!("manifests/{}", secret.digest),
    ] {
        evil.route(
            &format!("x/{what}"),
            Canned {
                body: bytes::Bytes::from_static(b"not the private content"),
                content_type: "application/octet-stream",
                ..Canned::default()
            },
        );
    }
    let creds = format!(
        "username = \"puller\"\npassword = \"pullpass\"\nrealm_hosts = [\"{}\"]\n",
        up.issuer().addr()
    );
    let berth = Berth::start(&format!(
        "{}{}",
        berth_testkit::upstream_toml(
            "docker.io",
            &up.url(),
            &format!("default = true\nauto_library = true\n{creds}")
        ),
        berth_testkit::upstream_toml("evil.test", &evil.url, ""),
    ));
    let dest = tempfile::tempdir().unwrap();
    Skopeo::new()
        .mirror(&berth.addr)
        .copy_to_dir("docker.io/private/secret:latest", dest.path())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    let client = reqwest::Client::new();
    // The layer, under the other upstream's name: whatever arrives is not
    // the private bytes.
    let r = client
        .get(format!("{}/v2/evil.test/x/blobs/{layer}", berth.url()))
        .send()
        .await
        .unwrap();
    let body = r.bytes().await.unwrap_or_default();
    let got = berth_testkit::checks::sha256(&body);
    assert_ne!(got, layer, "the private layer was served under evil.test");
    assert!(body.len() < 1024, "{} bytes of something", body.len());
    assert!(
        evil.count(&format!("GET /v2/x/blobs/{layer}")) >= 1,
        "the other upstream was not made to deliver: {:?}",
        evil.requests()
    );
    // The manifest likewise.
    let r = client
        .get(format!(
            "{}/v2/evil.test/x/manifests/{}",
            berth.url(),
            secret.digest
        ))
        .header("accept", &secret.media_type)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.bytes().await.unwrap_or_default();
    assert_ne!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_ne!(&body[..], &secret.manifest[..]);
    // Under its own upstream and name it is still served from the cache.
    let r = client
        .get(format!("{}/v2/private/secret/blobs/{layer}", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "HIT");
}
