//! The older systems' environment variables, honoured end to end: the
//! upstream host, the 302 target and the allow and block lists, against
//! the real upstream; and `check-config` printing each mapping.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::{Berth, TestRegistry};

#[tokio::test(flavor = "multi_thread")]
async fn seed_variables_route_redirect_and_filter() {
    let up = TestRegistry::start().await;
    let host = up.host();
    let berth = Berth::start_with_env(
        // The url is left to the environment.
        "[[upstreams]]\nname = \"docker.io\"\ndefault = true\nauto_library = true\n",
        &[
            ("PROXY_HOSTNAME", host.as_str()),
            ("PROXY_PROTOCOL", "http"),
            ("URL302", "https://example.org/docs"),
            ("UA_BLACKLIST_REGEX", "(?i)masscan"),
            ("PATHNAME_REGEX", "^/v2/(library/small/|$)"),
        ],
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let small = &up.images().small;
    let manifest = format!("{}/v2/library/small/manifests/latest", berth.url());
    // PROXY_HOSTNAME: the pull comes from the lab upstream.
    let r = client
        .get(&manifest)
        .header("accept", &small.media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", berth.log());
    assert_eq!(r.bytes().await.unwrap(), small.manifest);
    assert!(up.count("GET", "/v2/library/small/manifests/latest") >= 1);
    // UA_BLACKLIST_REGEX: a matching agent is denied by the seeded rule.
    let r = client
        .get(&manifest)
        .header("user-agent", "masscan/1.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("seed-ua-blacklist"));
    // PATHNAME_REGEX: a path outside it is denied, before upstream.
    up.reset_requests();
    let r = client
        .get(format!("{}/v2/library/big/manifests/latest", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("seed-pathname"));
    assert_eq!(up.count_path("library/big"), 0, "{:?}", up.requests());
    // URL302: outside the API, a redirect.
    let r = client
        .get(format!("{}/", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://example.org/docs");
}

#[test]
fn check_config_prints_each_mapping_and_what_it_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nurl302 = \"https://mine.example/\"\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env("CUSTOM_DOMAIN", "mirror.example.org")
        .env("URL302", "https://seed.example/")
        .env("MAX_RETRIES", "5")
        .env("DEBUG", "true")
        .env("IP_WHITELIST_REGEX", "^10\\.")
        .env("TRAEFIK_ACME_EMAIL", "ops@example.org")
        .env("HTTPS_PROXY", "http://user:hunter2@proxy.example:3128")
        .env("NO_PROXY", "localhost,10.0.0.0/8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "CUSTOM_DOMAIN → domain = \"mirror.example.org\"",
        "URL302 ignored: url302 is set",
        "MAX_RETRIES → every upstream's retries = 5",
        "DEBUG → log_level = \"debug\"",
        "IP_WHITELIST_REGEX → [[access.rules]] \"seed-ip-whitelist\": deny unless it matches \"^10\\\\.\"",
        "TRAEFIK_ACME_EMAIL ignored: berth terminates HTTPS itself",
        "HTTPS_PROXY = http://user:REDACTED@proxy.example:3128/ (upstream requests follow it)",
        "NO_PROXY = localhost,10.0.0.0/8",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains("domain mirror.example.org"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env("REQUEST_TIMEOUT", "soon")
        .env("PORT", "99999")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("REQUEST_TIMEOUT") && stderr.contains("PORT"),
        "{stderr}"
    );
}

#[test]
fn check_config_refuses_what_serve_would_refuse_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    // An MD5 entry, as `htpasswd -m` writes it.
    std::fs::write(&htpasswd, "alice:$apr1$4HkZ0vQK$0Dmt7w2nBrjmEmNwcuCgW.\n").unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[auth]\nhtpasswd_file = {:?}\n",
            dir.path().join("data").display().to_string(),
            htpasswd.display().to_string()
        ),
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([command, "--config"])
            .arg(&config)
            .env("BERTH_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{command}: {stderr}");
        assert!(
            stderr.contains("alice") && stderr.contains("htpasswd -B"),
            "{command}: {stderr}"
        );
    }
}
