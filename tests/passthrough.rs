//! Pass-through credentials and the private-content guard, against the
//! real upstream and its token server: clients log in to the upstream
//! through berth (`/token` relays their credentials), their own tokens are
//! used upstream, and cached private content reaches only clients upstream
//! confirmed, by tag and by digest, before and after an authorised pull.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, Skopeo, TestRegistry, podman_pull_with};

/// berth with the lab upstream as a pass-through Docker Hub.
fn passthrough(up: &TestRegistry) -> Berth {
    let extra = format!(
        "auth_mode = \"passthrough\"\nrealm_hosts = [\"{}\"]\n",
        up.issuer().addr()
    );
    Berth::hub(&up.url(), &extra)
}

const SECRET: &str = "docker.io/private/secret:latest";

#[tokio::test(flavor = "multi_thread")]
async fn clients_log_in_to_the_upstream_through_berth() {
    let up = TestRegistry::start().await;
    let berth = passthrough(&up);
    let secret = &up.images().private_secret;
    let dest = tempfile::tempdir().unwrap();

    // /v2/ sends a client to berth's own token endpoint.
    let ping = reqwest::get(format!("{}/v2/", berth.url())).await.unwrap();
    assert_eq!(ping.status(), 401);
    assert_eq!(
        ping.headers()["www-authenticate"],
        format!(
            "Bearer realm=\"{}/token\",service=\"docker.io\"",
            berth.url()
        )
    );

    // skopeo with the upstream's credentials pulls the private image;
    // the token server saw `puller` ask for the upstream's own name.
    up.issuer().reset_log();
    up.reset_requests();
    Skopeo::new()
        .mirror(&berth.addr)
        .creds("puller", "pullpass")
        .copy_to_dir(SECRET, &dest.path().join("ok"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    let manifest = std::fs::read(dest.path().join("ok/manifest.json")).unwrap();
    assert_eq!(manifest, secret.manifest);
    let log = up.issuer().token_log();
    assert!(
        log.iter().any(|t| t.username.as_deref() == Some("puller")
            && t.status == 200
            && t.scopes == ["repository:private/secret:pull"]),
        "{log:?}"
    );
    // Every request upstream carried a bearer token, none berth's own
    // anonymous one for this repository.
    let upstream_calls: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("private/secret"))
        .collect();
    assert!(!upstream_calls.is_empty());
    assert!(
        upstream_calls
            .iter()
            .all(|r| r.auth_scheme.as_deref() == Some("Bearer") && r.status < 400),
        "{upstream_calls:?}"
    );

    // podman logs in the same way.
    let digest = podman_pull_with(&berth.addr, SECRET, Some(("puller", "pullpass")))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    assert_eq!(digest, secret.digest);

    // A wrong password is refused by upstream, and the client is told.
    for (who, skopeo) in [
        ("a wrong password", Skopeo::new().creds("puller", "wrong")),
        ("no credentials", Skopeo::new()),
        (
            "a user without access",
            Skopeo::new().creds("outsider", "outsidepass"),
        ),
    ] {
        let failed = skopeo
            .mirror(&berth.addr)
            .copy_to_dir(SECRET, &dest.path().join("no"))
            .await;
        assert!(failed.is_err(), "{who} pulled the private image");
    }
    let wrong = reqwest::Client::new()
        .get(format!(
            "{}/token?service=docker.io&scope=repository:private/secret:pull",
            berth.url()
        ))
        .basic_auth("puller", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body = wrong.text().await.unwrap();
    assert!(!body.contains("wrong"), "{body}");
}

/// Start an upload to `private/chunks` through berth: its `Location`.
async fn start_upload(client: &reqwest::Client, berth: &Berth, token: &str) -> String {
    let start = client
        .post(format!("{}/v2/private/chunks/blobs/uploads/", berth.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202, "{}", berth.log());
    start.headers()["location"].to_str().unwrap().to_owned()
}

/// An upload `location` with the closing `digest` parameter.
fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// A bearer token the lab token server gives `user` (None: anonymous) for
/// `scope`, fetched through berth's token endpoint.
async fn token_via_berth(berth: &Berth, user: Option<(&str, &str)>, scope: &str) -> String {
    let mut request = reqwest::Client::new().get(format!(
        "{}/auth/token?service=docker.io&scope={scope}",
        berth.url()
    ));
    if let Some((u, p)) = user {
        request = request.basic_auth(u, Some(p));
    }
    let body = request.send().await.unwrap().bytes().await.unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_private_content_reaches_only_confirmed_clients() {
    let mut up = TestRegistry::start().await;
    let berth = passthrough(&up);
    let secret = up.images().private_secret.clone();
    let layer = secret.largest_blob().digest.clone();
    let client = reqwest::Client::new();
    let get = |path: String, token: Option<String>| {
        let mut r = client
            .get(format!("{}/v2/{path}", berth.url()))
            .header("accept", &secret.media_type);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let by_tag = "private/secret/manifests/latest".to_owned();
    let by_digest = format!("private/secret/blobs/{layer}");
    let elsewhere = format!("library/small/blobs/{layer}");

    let check_refused = |when: &'static str| {
        // Tokens asked for both repositories, as a client would that
        // pulls from both.
        let anonymous_scope = "repository:private/secret:pull&scope=repository:library/small:pull";
        let (by_tag, by_digest, elsewhere) = (by_tag.clone(), by_digest.clone(), elsewhere.clone());
        let berth = &berth;
        let get = &get;
        async move {
            let outsider =
                token_via_berth(berth, Some(("outsider", "outsidepass")), anonymous_scope).await;
            let anonymous = token_via_berth(berth, None, anonymous_scope).await;
            for (who, token) in [
                ("no token", None),
                ("an anonymous token", Some(anonymous)),
                ("an outsider's token", Some(outsider)),
            ] {
                for path in [&by_tag, &by_digest] {
                    let r = get(path.clone(), token.clone()).await.unwrap();
                    assert_eq!(r.status(), 401, "{when}: {who} got {path}");
                    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
                    assert!(
                        challenge.contains("scope=\"repository:private/secret:pull\""),
                        "{challenge}"
                    );
                }
                let r = get(elsewhere.clone(), token.clone()).await.unwrap();
                assert_eq!(
                    r.status(),
                    404,
                    "{when}: {who} got the layer under library/small"
                );
            }
        }
    };

    check_refused("before any pull").await;
    let puller = token_via_berth(
        &berth,
        Some(("puller", "pullpass")),
        "repository:private/secret:pull&scope=repository:library/small:pull",
    )
    .await;
    let r = get(by_tag.clone(), Some(puller.clone())).await.unwrap();
    assert_eq!(r.status(), 200, "{}", berth.log());
    assert_eq!(r.bytes().await.unwrap(), secret.manifest);
    let r = get(by_digest.clone(), Some(puller.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // Cached now; the same refusals hold, and not even the puller gets
    // the layer under a name that does not reference it.
    check_refused("while cached").await;
    let r = get(elsewhere.clone(), Some(puller.clone())).await.unwrap();
    assert_eq!(r.status(), 404);
    // The confirmed client is served from the cache, even with upstream
    // down; an unconfirmed one still is not.
    let r = get(by_digest.clone(), Some(puller.clone())).await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    r.bytes().await.unwrap();
    up.stop();
    let r = get(by_digest.clone(), Some(puller)).await.unwrap();
    assert_eq!(r.status(), 200, "{}", berth.log());
    let r = get(by_digest.clone(), None).await.unwrap();
    assert_ne!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_emitted_url_carries_a_forged_host() {
    let up = TestRegistry::start().await;
    let berth = passthrough(&up);
    let client = reqwest::Client::new();
    for path in ["/v2/", "/v2/private/secret/manifests/latest"] {
        let r = client
            .get(format!("{}{path}", berth.url()))
            .header("host", "evil.example")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(!challenge.contains("evil"), "{challenge}");
        assert!(
            challenge.contains(&format!("realm=\"{}/token\"", berth.url())),
            "{challenge}"
        );
        for (name, value) in r.headers() {
            assert!(
                !value.to_str().unwrap_or("").contains("evil"),
                "{name}: {value:?}"
            );
        }
    }
}

/// `skopeo copy` of the seeded `secret` image to `dest` (a registry
/// reference), with `creds`; the pushed manifest's digest on success.
async fn skopeo_push(dest: &str, creds: &str) -> Result<String, String> {
    skopeo_push_image("secret", dest, creds).await
}

/// [`skopeo_push`] of the seeded image tagged `image` in the test layout.
async fn skopeo_push_image(image: &str, dest: &str, creds: &str) -> Result<String, String> {
    let image = image.to_owned();
    let layout = berth_testkit::test_images().layout.clone();
    let dest = dest.to_owned();
    let creds = creds.to_owned();
    tokio::task::spawn_blocking(move || {
        let scratch = tempfile::tempdir().unwrap();
        let digest_file = scratch.path().join("digest");
        let out = berth_testkit::isolated_skopeo(scratch.path())
            .args(["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds"])
            .arg(&creds)
            .arg("--digestfile")
            .arg(&digest_file)
            .arg(format!("oci:{}:{image}", layout.display()))
            .arg(format!("docker://{dest}"))
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(std::fs::read_to_string(digest_file).unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_go_upstream_with_the_clients_own_credentials() {
    let up = TestRegistry::start().await;
    let extra = format!(
        "auth_mode = \"passthrough\"\npush = true\nrealm_hosts = [\"{}\"]\n",
        up.issuer().addr()
    );
    let berth = Berth::hub(&up.url(), &extra);

    let digest = skopeo_push(
        &format!("{}/private/pushed:v1", berth.addr),
        "pusher:pushpass",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    // Every write reached upstream with the client's own token.
    let writes: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PATCH" | "PUT"))
        .collect();
    assert!(
        writes
            .iter()
            .any(|r| r.method == "PUT" && r.path == "/v2/private/pushed/manifests/v1")
    );
    assert!(
        writes
            .iter()
            .any(|r| r.path.starts_with("/v2/private/pushed/blobs/uploads/"))
    );
    for w in &writes {
        assert_eq!(w.auth_scheme.as_deref(), Some("Bearer"), "{w:?}");
        assert!(w.status < 300, "{w:?}");
        assert!(!w.header_names.iter().any(|h| h == "cookie"), "{w:?}");
    }
    // It is upstream's now: pulled straight from it.
    let raw = Skopeo::new()
        .creds("puller", "pullpass")
        .inspect_raw(&format!("{}/private/pushed:v1", up.host()))
        .await
        .unwrap();
    assert_eq!(berth_testkit::checks::sha256(&raw), digest.trim());

    // Pulled through berth, the tag's answer is cached; a new push to the
    // same tag through berth is what the next pull gets.
    let token = token_via_berth(
        &berth,
        Some(("pusher", "pushpass")),
        "repository:private/pushed:pull",
    )
    .await;
    let manifest_digest = |token: String| {
        let url = format!("{}/v2/private/pushed/manifests/v1", berth.url());
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(manifest_digest(token.clone()).await, digest.trim());
    let second = skopeo_push_image(
        "small",
        &format!("{}/private/pushed:v1", berth.addr),
        "pusher:pushpass",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    assert_ne!(second.trim(), digest.trim());
    assert_eq!(manifest_digest(token).await, second.trim());

    // A user who may not push is refused, by upstream.
    assert!(
        skopeo_push(
            &format!("{}/private/refused:v1", berth.addr),
            "puller:pullpass"
        )
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_refused_where_push_is_off() {
    let up = TestRegistry::start().await;
    let managed = Berth::hub(&up.url(), "");
    let passthrough_only = passthrough(&up);
    let client = reqwest::Client::new();
    for berth in [&managed, &passthrough_only] {
        up.reset_requests();
        for (method, path) in [
            (reqwest::Method::POST, "/v2/private/x/blobs/uploads/"),
            (reqwest::Method::PATCH, "/v2/private/x/blobs/uploads/abc"),
            (
                reqwest::Method::PUT,
                "/v2/private/x/blobs/uploads/abc?digest=sha256:00",
            ),
            (reqwest::Method::PUT, "/v2/private/x/manifests/v1"),
            (reqwest::Method::DELETE, "/v2/private/x/manifests/v1"),
        ] {
            let r = client
                .request(method.clone(), format!("{}{path}", berth.url()))
                .body("data")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            assert!(r.text().await.unwrap().contains("UNSUPPORTED"));
        }
        assert!(
            up.requests()
                .iter()
                .all(|r| r.method == "GET" || r.method == "HEAD"),
            "{:?}",
            up.requests()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_and_monolithic_uploads_follow_rewritten_locations() {
    let up = TestRegistry::start().await;
    let extra = format!(
        "auth_mode = \"passthrough\"\npush = true\nrealm_hosts = [\"{}\"]\n",
        up.issuer().addr()
    );
    let berth = Berth::hub(&up.url(), &extra);
    let token = token_via_berth(
        &berth,
        Some(("pusher", "pushpass")),
        "repository:private/chunks:pull,push",
    )
    .await;
    let client = reqwest::Client::new();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = berth_testkit::checks::sha256(&blob);

    // Chunked: POST, two PATCHes, PUT with the digest.
    let mut location = start_upload(&client, &berth, &token).await;
    assert!(
        location.starts_with("/v2/private/chunks/blobs/uploads/"),
        "{location}"
    );
    for (from, to) in [(0usize, 100_000usize), (100_000, blob.len())] {
        let r = client
            .patch(format!("{}{location}", berth.url()))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{}", to - 1))
            .body(blob[from..to].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["range"], format!("0-{}", to - 1));
        location = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with('/'), "{location}");
    }
    let done = client
        .put(format!(
            "{}{}",
            berth.url(),
            with_digest(&location, &digest)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201);
    assert_eq!(done.headers()["docker-content-digest"], digest.as_str());

    // Monolithic: a POST, then one PUT with the whole body and the digest.
    let other: Vec<u8> = blob.iter().rev().copied().collect();
    let other_digest = berth_testkit::checks::sha256(&other);
    let location = start_upload(&client, &berth, &token).await;
    let r = client
        .put(format!(
            "{}{}",
            berth.url(),
            with_digest(&location, &other_digest)
        ))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Both are upstream's, byte for byte.
    let pull = up
        .issuer()
        .mint(&["repository:private/chunks:pull"], Some("puller"));
    for (d, bytes) in [(&digest, &blob), (&other_digest, &other)] {
        let got = client
            .get(format!("{}/v2/private/chunks/blobs/{d}", up.url()))
            .bearer_auth(&pull)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(&got.bytes().await.unwrap()[..], &bytes[..]);
    }
}
