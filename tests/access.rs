//! Access end to end against the real upstream: htpasswd logins with
//! skopeo and podman (right, wrong and missing passwords, and no anonymous
//! pulls when `anonymous = "none"`), the `/v2/` challenge `docker login`
//! relies on, rate limits per client IP and on failed logins, access rules
//! (region from a trusted proxy's header among them), `X-Forwarded-For`
//! from a trusted and an untrusted peer, and the warning
//! when upstream credentials are open to anyone.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, Skopeo, TestRegistry, podman_pull_with};
use std::net::IpAddr;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

/// An htpasswd file with `USER` in `dir`, as `[auth]` with `extra`.
fn auth_toml(dir: &std::path::Path, extra: &str) -> String {
    let file = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 5).unwrap();
    std::fs::write(&file, format!("{USER}:{hash}\n")).unwrap();
    format!(
        "[auth]\nhtpasswd_file = {:?}\n{extra}\n",
        file.display().to_string()
    )
}

/// A client whose requests leave from `ip` (any 127.0.0.0/8 address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_decide_who_pulls_with_real_clients() {
    let up = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let berth = Berth::hub(&up.url(), &auth_toml(dir.path(), "anonymous = \"none\""));
    let image = "docker.io/library/small:latest";
    let dest = tempfile::tempdir().unwrap();

    Skopeo::new()
        .mirror(&berth.addr)
        .creds(USER, PASSWORD)
        .copy_to_dir(image, &dest.path().join("ok"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    for (what, skopeo) in [
        ("a wrong password", Skopeo::new().creds(USER, "wrong")),
        ("no login", Skopeo::new()),
    ] {
        let failed = skopeo
            .mirror(&berth.addr)
            .copy_to_dir(image, &dest.path().join("no"))
            .await;
        let Err(said) = failed else {
            panic!("{what} pulled")
        };
        // Without credentials skopeo answers the challenge with an empty
        // Basic login: it is asked to log in, not told it is wrong.
        let told = if what == "no login" {
            "log in to use this mirror"
        } else {
            "wrong user name or password"
        };
        assert!(said.contains(told), "{what}: {said}");
    }
    let digest = podman_pull_with(&berth.addr, image, Some((USER, PASSWORD)))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    assert_eq!(digest, up.images().small.digest);
    assert!(
        podman_pull_with(&berth.addr, image, Some((USER, "wrong")))
            .await
            .is_err()
    );

    // What `docker login` does: /v2/ without a login is challenged, with
    // one it passes.
    let client = reqwest::Client::new();
    let ping = client
        .get(format!("{}/v2/", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 401);
    assert_eq!(
        ping.headers()["www-authenticate"],
        "Basic realm=\"berth\", charset=\"UTF-8\""
    );
    let body = ping.text().await.unwrap();
    assert!(body.contains("\"UNAUTHORIZED\""), "{body}");
    let ok = client
        .get(format!("{}/v2/", berth.url()))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // An anonymous manifest request is refused before it goes upstream.
    up.reset_requests();
    let anonymous = client
        .get(format!("{}/v2/library/multi/manifests/latest", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(up.requests_beyond_ping().len(), 0);
    // It is logged (and counted) under the route it asked for.
    let refused = berth
        .log()
        .lines()
        .filter(|l| l.contains("/v2/library/multi/manifests/latest") && l.contains("served"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        refused
            .iter()
            .any(|l| l.contains("route=\"manifest\"") && l.contains("status=401")),
        "{refused:?}"
    );

    // A burst of wrong passwords from one address (one the clients above
    // did not use) is cut off with 429.
    let guesser = client_from("127.0.0.4");
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = guesser
            .get(format!("{}/v2/", berth.url()))
            .basic_auth(USER, Some("guess"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[0], 401);
    assert!(statuses.ends_with(&[429, 429]), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_from_one_address_gets_429_while_another_is_served() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "[limits]\nrate = 10\nburst = 20\n");
    let url = format!("{}/v2/", berth.url());
    let noisy = client_from("127.0.0.1");
    let requests = (0..200).map(|_| noisy.get(&url).send());
    let answers = futures_util::future::join_all(requests).await;
    let mut limited = 0;
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            200 => {}
            429 => {
                limited += 1;
                let wait: u64 = answer.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&wait), "{wait}");
            }
            other => panic!("{other}"),
        }
    }
    assert!(limited >= 150, "{limited} of 200 limited");
    let quiet = client_from("127.0.0.2");
    assert_eq!(quiet.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_match_address_agent_repository_and_forwarded_clients() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(
        &up.url(),
        r#"[limits]
trusted_proxies = ["127.0.0.1/32"]
[access]
region_header = "CF-IPCountry"
[[access.rules]]
name = "embargo"
action = "deny"
region = ["XX"]
[[access.rules]]
name = "no-scanners"
action = "deny"
user_agent = "(?i)masscan|zgrab"
[[access.rules]]
name = "blocked-net"
action = "deny"
ip = ["127.0.0.3/32", "203.0.113.0/24"]
[[access.rules]]
name = "no-secrets"
action = "deny"
repository = "^library/secret"
"#,
    );
    let manifest = format!("{}/v2/library/small/manifests/latest", berth.url());
    let status = |r: reqwest::Response| r.status().as_u16();
    let local = reqwest::Client::new();
    assert_eq!(status(local.get(&manifest).send().await.unwrap()), 200);

    let scanner = local
        .get(&manifest)
        .header("user-agent", "Masscan/1.3")
        .send()
        .await
        .unwrap();
    assert_eq!(scanner.status(), 403);
    let body = scanner.text().await.unwrap();
    assert!(
        body.contains("\"DENIED\"") && body.contains("no-scanners"),
        "{body}"
    );

    let blocked = client_from("127.0.0.3")
        .get(&manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403);
    assert!(blocked.text().await.unwrap().contains("blocked-net"));

    let secret = format!("{}/v2/library/secret/manifests/latest", berth.url());
    up.reset_requests();
    assert_eq!(status(local.get(&secret).send().await.unwrap()), 403);
    assert_eq!(
        up.requests_beyond_ping().len(),
        0,
        "a denied request went upstream"
    );

    // The trusted proxy (127.0.0.1) names a client in a blocked network;
    // an untrusted peer (127.0.0.2) cannot.
    let forwarded = local
        .get(&manifest)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 403);
    let spoofed = client_from("127.0.0.2")
        .get(&manifest)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 200);

    // A country named by the trusted proxy counts; by anyone else, not.
    let from_xx = |client: reqwest::Client| {
        let url = manifest.clone();
        async move {
            client
                .get(url)
                .header("cf-ipcountry", "XX")
                .send()
                .await
                .unwrap()
        }
    };
    let denied = from_xx(local.clone()).await;
    assert_eq!(denied.status(), 403);
    assert!(denied.text().await.unwrap().contains("embargo"));
    assert_eq!(from_xx(client_from("127.0.0.2")).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_credentials_open_to_anyone_are_warned_about() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "username = \"u\"\npassword = \"p\"\n");
    let warning = "upstream credentials are configured (docker.io) but nothing limits who may pull";
    assert!(berth.log().contains(warning), "{}", berth.log());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["check-config", "--config"])
        .arg(berth.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("WARNING: {warning}")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_the_api_a_landing_page_or_the_configured_redirect_never_the_callers_host() {
    let up = TestRegistry::start().await;
    let plain = Berth::hub(&up.url(), "");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = |url: String| {
        client
            .get(url)
            .header("host", "evil.example")
            .header("x-forwarded-host", "evil.example")
            .send()
    };
    let page = forged(format!("{}/", plain.url())).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let text = page.text().await.unwrap();
    assert!(
        text.contains("registry-mirrors") && !text.contains("evil"),
        "{text}"
    );
    let other = forged(format!("{}/favicon.ico", plain.url()))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert!(other.text().await.unwrap().contains("\"UNSUPPORTED\""));

    let redirecting = Berth::start(&format!(
        "url302 = \"https://www.example.org/mirror\"\n{}",
        berth_testkit::upstream_toml("docker.io", &up.url(), "default = true")
    ));
    for path in ["/", "/anything"] {
        let r = forged(format!("{}{path}", redirecting.url()))
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "https://www.example.org/mirror");
    }
    let api = forged(format!("{}/v2/", redirecting.url())).await.unwrap();
    assert_eq!(api.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_of_the_configured_origin_get_cors_headers_and_others_none() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(
        &up.url(),
        "[access]\ncors_origins = [\"https://ui.example.com\"]\n",
    );
    let client = reqwest::Client::new();
    let manifest = format!("{}/v2/library/small/manifests/latest", berth.url());
    let preflight = client
        .request(reqwest::Method::OPTIONS, &manifest)
        .header("origin", "https://ui.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://ui.example.com"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-methods"],
        "GET, HEAD"
    );
    let get = client
        .get(&manifest)
        .header("origin", "https://ui.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let exposed = get.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("Docker-Content-Digest"), "{exposed}");
    let stranger = client
        .get(&manifest)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 200);
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let stranger_preflight = client
        .request(reqwest::Method::OPTIONS, &manifest)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger_preflight.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clients_credentials_cookies_and_own_headers_never_reach_upstream() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    let client = reqwest::Client::new();
    let images = up.images();
    let small = &images.small;
    for path in [
        format!("/v2/library/small/manifests/{}", small.tag),
        format!("/v2/library/small/blobs/{}", small.blobs[0].digest),
        "/v2/library/small/tags/list".to_owned(),
    ] {
        let r = client
            .get(format!("{}{path}", berth.url()))
            .header("authorization", "Basic Y2xpZW50OnNlY3JldA==")
            .header("cookie", "session=client-secret")
            .header("x-client-secret", "hunter2")
            .header("x-forwarded-for", "203.0.113.9")
            .header("proxy-authorization", "Basic Y2xpZW50OnNlY3JldA==")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    let requests = up.requests();
    assert!(!requests.is_empty());
    for request in requests {
        for name in [
            "cookie",
            "x-client-secret",
            "x-forwarded-for",
            "proxy-authorization",
        ] {
            assert!(
                !request.header_names.iter().any(|h| h == name),
                "{name} reached upstream: {request:?}"
            );
        }
        // Only berth's own upstream token, never the client's login.
        assert_ne!(request.auth_scheme.as_deref(), Some("Basic"), "{request:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn region_rules_read_a_geoip_database() {
    let up = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    berth_testkit::geoip::write_country_db(
        &db,
        &[
            ("127.0.0.4/32", "XX"),
            ("127.0.0.5/32", "DE"),
            ("198.51.100.0/24", "XX"),
        ],
    );
    let berth = Berth::hub(
        &up.url(),
        &format!(
            r#"[limits]
trusted_proxies = ["127.0.0.1/32"]
[access]
geoip_file = {:?}
[[access.rules]]
name = "embargo"
action = "deny"
region = ["xx"]
"#,
            db.display().to_string()
        ),
    );
    let manifest = format!("{}/v2/library/small/manifests/latest", berth.url());
    let from = |ip: &str| client_from(ip).get(&manifest).send();

    let denied = from("127.0.0.4").await.unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied.text().await.unwrap().contains("embargo"));
    assert_eq!(from("127.0.0.5").await.unwrap().status(), 200);
    // An address the database does not know matches no region.
    assert_eq!(from("127.0.0.6").await.unwrap().status(), 200);
    // Behind the trusted proxy, the forwarded client is looked up; from
    // an untrusted peer the header is ignored.
    let forwarded = |ip: &str| {
        client_from(ip)
            .get(&manifest)
            .header("x-forwarded-for", "198.51.100.9")
            .send()
    };
    assert_eq!(forwarded("127.0.0.1").await.unwrap().status(), 403);
    assert_eq!(forwarded("127.0.0.5").await.unwrap().status(), 200);
}

#[test]
fn a_broken_geoip_database_stops_berth_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    std::fs::write(&db, b"not a database").unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[access]\ngeoip_file = {:?}\n",
            dir.path().join("data").display().to_string(),
            db.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("country.mmdb") && stderr.contains("not a MaxMind database"),
        "{stderr}"
    );
}
