//! Self-test of the end-to-end harness, with no berth involved: the upstream
//! starts with working token auth, the tap forwards transparently and counts,
//! outages can be simulated, and the real clients' recipes work when pointed
//! straight at the upstream as if it were a mirror.
#![allow(clippy::unwrap_used)] // also in helpers outside #[test] fns

use berth_testkit::{
    Containerd, Skopeo, TestRegistry, podman_pull, skopeo_copy_to_dir, skopeo_inspect_raw,
    write_hosts_toml,
};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get_token(
    up: &TestRegistry,
    scope: &str,
    creds: Option<(&str, &str)>,
) -> reqwest::Response {
    let url = url::Url::parse_with_params(
        &up.issuer().realm(),
        [("service", "registry.test"), ("scope", scope)],
    )
    .unwrap();
    let mut req = client().get(url);
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.unwrap()
}

async fn token(up: &TestRegistry, scope: &str, creds: Option<(&str, &str)>) -> String {
    let resp = get_token(up, scope, creds).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn skopeo_pulls_directly_and_the_tap_counts() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let src = format!("{}/{}", up.host(), small.reference());

    assert_eq!(skopeo_inspect_raw(&src).await.unwrap(), small.manifest);
    let dest = tempfile::tempdir().unwrap();
    skopeo_copy_to_dir(&src, dest.path()).await.unwrap();

    for blob in &small.blobs {
        assert_eq!(up.count("GET", &format!("/blobs/{}", blob.digest)), 1);
    }
    assert_eq!(up.count("GET", "/v2/library/small/manifests/latest"), 2);
    let manifest_get = up
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/manifests/"))
        .unwrap();
    assert!(
        manifest_get.accept.len() > 1,
        "Accept lines kept apart: {:?}",
        manifest_get.accept
    );
    assert_eq!(up.issuer().token_requests(), 2);
    up.reset_requests();
    assert!(up.requests_beyond_ping().is_empty());
}

#[tokio::test]
async fn token_policy_is_enforced_by_the_registry() {
    let up = TestRegistry::start().await;
    let http = client();
    let manifest = |repo: &str| format!("{}/v2/{repo}/manifests/latest", up.url());
    let accept = up.images().small.media_type.clone();

    let challenge = http.get(format!("{}/v2/", up.url())).send().await.unwrap();
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    let www = challenge.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        www.contains(&up.issuer().realm()) && www.contains("registry.test"),
        "{www}"
    );

    let cases = [
        ("library/small", None, StatusCode::OK),
        ("private/small", None, StatusCode::UNAUTHORIZED),
        (
            "private/small",
            Some(("puller", "pullpass")),
            StatusCode::OK,
        ),
        (
            "private/small",
            Some(("pusher", "pushpass")),
            StatusCode::OK,
        ),
    ];
    for (repo, creds, want) in cases {
        let t = token(&up, &format!("repository:{repo}:pull"), creds).await;
        let resp = http
            .get(manifest(repo))
            .header(ACCEPT, &accept)
            .header(AUTHORIZATION, format!("Bearer {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{repo} as {creds:?}");
    }
    let minted = up
        .issuer()
        .mint(&["repository:private/small:pull"], Some("puller"));
    let resp = http
        .head(manifest("private/small"))
        .header(ACCEPT, &accept)
        .bearer_auth(minted)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let bad = get_token(
        &up,
        "repository:library/small:pull",
        Some(("puller", "nope")),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let form = client()
        .post(up.issuer().realm())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=pusher&password=pushpass&service=registry.test&scope=repository%3Aprivate%2Fsmall%3Apull")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    up.issuer().set_down(true);
    let down = get_token(&up, "repository:library/small:pull", None).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);

    let log = up.issuer().token_log();
    assert_eq!(log.len(), 7);
    assert_eq!(log[5].method, "POST");
    assert_eq!(log[5].username.as_deref(), Some("pusher"));
    assert_eq!(log[4].status, 401);
    assert_eq!(log[6].status, 503);
}

#[tokio::test]
async fn tap_is_transparent_for_heads_and_big_blobs() {
    let up = TestRegistry::start().await;
    let http = client();
    let big = &up.images().big;
    let t = token(&up, "repository:library/big:pull", None).await;

    let head = |base: String| {
        http.head(format!("{base}{}", big.manifest_path()))
            .header(ACCEPT, "application/vnd.oci.image.manifest.v1+json")
            .header(ACCEPT, &big.media_type)
            .bearer_auth(&t)
            .send()
    };
    let direct = head(up.registry_url()).await.unwrap();
    let tapped = head(up.url()).await.unwrap();
    assert_eq!(tapped.status(), StatusCode::OK);
    for name in [
        CONTENT_LENGTH.as_str(),
        "content-type",
        "docker-content-digest",
        "etag",
    ] {
        assert_eq!(
            direct.headers().get(name),
            tapped.headers().get(name),
            "{name}"
        );
    }
    assert_eq!(
        tapped.headers()["docker-content-digest"],
        big.digest.as_str()
    );
    assert_eq!(up.requests()[0].accept.len(), 2);

    let blob = big.largest_blob();
    let resp = http
        .get(format!("{}{}", up.url(), big.blob_path(blob)))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.content_length(), Some(blob.size));
    let body = resp.bytes().await.unwrap();
    assert_eq!(berth_testkit::checks::sha256(&body), blob.digest);
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_recovers() {
    let mut up = TestRegistry::start().await;
    let v2 = format!("{}/v2/", up.url());
    up.fail_next(1, 503);
    assert_eq!(
        client().get(&v2).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        client().get(&v2).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    up.stop();
    let err = client().get(&v2).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    up.restart();
    assert_eq!(
        client().get(&v2).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(up.count("GET", "/v2/"), 3);
}

#[tokio::test]
async fn podman_pulls_through_a_mirror_location() {
    let up = TestRegistry::start().await;
    let imgs = up.images();
    let digest = podman_pull(&up.host(), "docker.io/library/small:latest")
        .await
        .unwrap();
    assert_eq!(digest, imgs.small.digest);
    assert_eq!(up.count("GET", "/v2/library/small/manifests/latest"), 1);
    assert!(up.requests().iter().all(|r| r.query.is_none()));
}

#[tokio::test]
async fn containerd_pulls_through_a_hosts_toml_mirror() {
    let up = TestRegistry::start().await;
    let ctrd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "docker.io", &up.url(), false);
    let multi = &up.images().multi;
    let digest = ctrd
        .ctr_pull("docker.io/library/multi:latest", hosts.path())
        .await
        .unwrap();
    assert_eq!(digest, multi.digest);
    let reqs = up.requests();
    assert!(
        reqs.iter()
            .all(|r| r.query.as_deref() == Some("ns=docker.io"))
    );
    assert_eq!(reqs[0].method, "HEAD");
    let amd64 = multi
        .children
        .iter()
        .find(|c| c.platform == "linux/amd64")
        .unwrap();
    assert_eq!(up.count("GET", &format!("/manifests/{}", amd64.digest)), 1);
}

#[tokio::test]
async fn skopeo_mirror_mode_sends_mirror_credentials() {
    let up = TestRegistry::start().await;
    let private = &up.images().private_small;
    let anonymous = Skopeo::new().mirror(&up.host());
    assert!(
        anonymous
            .inspect_raw("docker.io/private/small:latest")
            .await
            .is_err()
    );
    up.issuer().reset_log();
    let puller = Skopeo::new().mirror(&up.host()).creds("puller", "pullpass");
    let raw = puller
        .inspect_raw("docker.io/private/small:latest")
        .await
        .unwrap();
    assert_eq!(raw, private.manifest);
    let log = up.issuer().token_log();
    assert!(
        log.iter().all(|t| t.username.as_deref() == Some("puller")),
        "{log:?}"
    );
}
