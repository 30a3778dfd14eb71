//! Automatic certificates end to end against pebble (the ACME test server,
//! with its own DNS sending every name to 127.0.0.1): for HTTP-01 and for
//! TLS-ALPN-01 the certificate is issued, a client then verifies berth
//! against pebble's root, a short validity forces a renewal, and a restart
//! serves the stored certificate without ordering again.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::sample;
use berth_testkit::pebble::Pebble;
use berth_testkit::proc::free_port;
use berth_testkit::tls::TestCa;
use berth_testkit::{Berth, TestRegistry, upstream_toml};
use std::time::{Duration, Instant};

const NAME: &str = "berth.test";

fn config(
    up: &TestRegistry,
    pebble: &Pebble,
    ca: &TestCa,
    ports: (u16, u16),
    challenge: &str,
) -> String {
    format!(
        "listen = \"127.0.0.1:{}\"\n{}[tls]\nredirect_listen = \"127.0.0.1:{}\"\n[tls.acme]\n\
         domains = [\"{NAME}\"]\ncontact = \"mailto:ops@{NAME}\"\ndirectory_url = {:?}\n\
         challenge = {challenge:?}\nca_file = {:?}\n",
        ports.0,
        upstream_toml(
            "docker.io",
            &up.url(),
            "default = true\nauto_library = true"
        ),
        ports.1,
        pebble.directory_url,
        ca.ca_file().display().to_string()
    )
}

async fn wait_for_log(berth: &Berth, pebble: &Pebble, line: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !berth.log().contains(line) {
        assert!(
            Instant::now() < deadline,
            "no {line:?}:\n{}\npebble:\n{}",
            berth.log(),
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// berth on HTTPS with `challenge`, once pebble (issuing for
/// `validity_secs`) has given it a certificate: the upstream, the CA of
/// pebble's own HTTPS, the (HTTPS, plain) ports, pebble, the config and
/// berth.
async fn issued(
    challenge: &str,
    validity_secs: u64,
) -> (TestRegistry, TestCa, (u16, u16), Pebble, String, Berth) {
    let up = TestRegistry::start().await;
    let ca = TestCa::new();
    let ports = (free_port(), free_port());
    let pebble = Pebble::start(&ca, ports.1, ports.0, validity_secs);
    let body = config(&up, &pebble, &ca, ports, challenge);
    let berth = Berth::start(&body);
    let limit = Duration::from_secs(60);
    wait_for_log(&berth, &pebble, "ACME certificate issued", limit).await;
    (up, ca, ports, pebble, body, berth)
}

/// A client that trusts only pebble's root and finds `NAME` on `port`.
async fn verifying_client(pebble: &Pebble, ca: &TestCa, port: u16) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(pebble.root(ca).await.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([root])
        .resolve(NAME, ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
}

async fn metrics(client: &reqwest::Client, port: u16) -> String {
    let url = format!("https://{NAME}:{port}/metrics");
    client.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn_01_issues_a_certificate_and_renews_it_before_it_expires() {
    let (_up, ca, ports, pebble, _body, berth) = issued("tls-alpn-01", 30).await;

    let client = verifying_client(&pebble, &ca, ports.0).await;
    let ping = client
        .get(format!("https://{NAME}:{}/v2/", ports.0))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let text = metrics(&client, ports.0).await;
    assert!(
        text.contains(r#"berth_tls_certificate_loads_total{source="issue",outcome="ok"} 1"#),
        "{text}"
    );
    let expiry = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(
                    "berth_tls_certificate_expiry_timestamp_seconds{certificate=\"berth.test\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{text}"))
    };
    let first = expiry(&text);

    // Valid for 30 s: renewed after 20, and the new one is served.
    wait_for_log(
        &berth,
        &pebble,
        "ACME certificate renewed",
        Duration::from_secs(45),
    )
    .await;
    let text = metrics(&client, ports.0).await;
    assert!(
        sample(
            &text,
            r#"berth_tls_certificate_loads_total{source="renew",outcome="ok"}"#
        ) >= 1.0,
        "{text}"
    );
    assert!(expiry(&text) > first, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_01_issues_a_certificate_that_a_restart_serves_without_ordering_again() {
    let (_up, ca, ports, pebble, body, mut berth) = issued("http-01", 90 * 86_400).await;
    let client = verifying_client(&pebble, &ca, ports.0).await;
    let url = format!("https://{NAME}:{}/v2/", ports.0);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // The plain listener still redirects everything but the challenges.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://127.0.0.1:{}/v2/", ports.1))
        .header("host", NAME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://{NAME}:{}/v2/", ports.0).as_str()
    );
    let r = plain
        .get(format!(
            "http://127.0.0.1:{}/.well-known/acme-challenge/unknown",
            ports.1
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    assert!(berth.terminate(Duration::from_secs(10)).is_some());
    let data = berth.keep_data().unwrap();
    let again = Berth::start_with_data(&body, &data.path().join("data"));
    let client = verifying_client(&pebble, &ca, ports.0).await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert!(
        !again.log().contains("ACME certificate issued"),
        "{}",
        again.log()
    );
}
