//! HTTPS end to end, with a CA the test generates: real clients (skopeo,
//! podman, containerd, curl over HTTP/1.1 and HTTP/2) pull through berth
//! and verify its certificate; a certificate rotated on disk reaches new
//! connections while a held-open one keeps working; a bad file at reload
//! keeps the old certificate; the plain listener redirects; a bad pair
//! stops the start with status 78.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::tls::{LeafFiles, TestCa, rotate};
use berth_testkit::{
    Berth, Containerd, Skopeo, TestRegistry, podman_pull_tls, write_hosts_toml_ca,
};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// berth on HTTPS with `leaf`, Docker Hub at `up`, plus `extra`.
fn https_berth(up: &TestRegistry, leaf: &LeafFiles, extra: &str) -> Berth {
    Berth::hub(&up.url(), &format!("{}{extra}", leaf.tls_toml()))
}

/// curl with the test CA; (HTTP version, status, body).
fn curl(ca: &TestCa, url: &str, http2: bool) -> (String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca.ca_file())
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .args(["-o"])
        .arg(&body)
        .args(["-w", "%{http_version} %{http_code}", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (version, status) = text.split_once(' ').unwrap();
    (
        version.to_owned(),
        status.to_owned(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn real_clients_pull_over_https_and_verify_the_certificate() {
    let up = TestRegistry::start().await;
    let images = up.images();
    let ca = TestCa::new();
    let leaf = ca.issue("berth", 2090);
    let berth = https_berth(&up, &leaf, "");
    assert!(berth.url().starts_with("https://"), "{}", berth.url());
    let host = format!("localhost:{}", berth.port());

    // curl, HTTP/1.1 and HTTP/2 (ALPN): the same blob, whole.
    let blob = &images.small.blobs[1];
    let url = format!("https://{host}/v2/library/small/blobs/{}", blob.digest);
    for http2 in [false, true] {
        let (version, status, body) = curl(&ca, &url, http2);
        assert_eq!(status, "200");
        assert_eq!(version, if http2 { "2" } else { "1.1" });
        let digest = berth_testkit::checks::sha256(&body);
        assert_eq!(digest, blob.digest);
    }

    // skopeo, verified against the CA, and refused without it.
    let dest = tempfile::tempdir().unwrap();
    Skopeo::new()
        .mirror(&host)
        .verify_with(&ca.cert_dir())
        .copy_to_dir("docker.io/library/small:latest", &dest.path().join("a"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    let empty = tempfile::tempdir().unwrap();
    let refused = Skopeo::new()
        .mirror(&host)
        .verify_with(empty.path())
        .copy_to_dir("docker.io/library/small:latest", &dest.path().join("b"))
        .await
        .unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");

    // podman with --cert-dir, containerd with `ca` in hosts.toml.
    let digest = podman_pull_tls(
        &host,
        "docker.io/library/multi:latest",
        None,
        Some(&ca.cert_dir()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    assert_eq!(digest, images.multi.digest);
    let containerd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml_ca(
        hosts.path(),
        "docker.io",
        &format!("https://{host}"),
        false,
        Some(&ca.ca_file()),
    );
    let digest = containerd
        .ctr_pull("docker.io/library/multi:latest", hosts.path())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", berth.log()));
    assert_eq!(digest, images.multi.digest);

    // Blob bodies under TLS are never sent with sendfile.
    let metrics = metrics(&ca, &host).await;
    assert!(
        metrics.contains("berth_served_zero_copy_bytes_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"berth_tls_certificate_expiry_timestamp_seconds{certificate="localhost"} 3786912000"#
        ),
        "{metrics}"
    );
}

/// `/metrics` over HTTPS from `host` (`name:port`), trusting `ca`.
async fn metrics(ca: &TestCa, host: &str) -> String {
    let url = format!("https://{host}/metrics");
    let response = ca.client().get(url).send().await.unwrap();
    response.text().await.unwrap()
}

/// The leaf's expiry (`notAfter=...`) that a new connection to `port` gets.
fn served_expiry(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -enddate"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn wait_for_expiry(port: u16, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_expiry(port) != want {
        assert!(Instant::now() < deadline, "still {}", served_expiry(port));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One HTTP/1.1 request on a held connection; the status line.
async fn ask<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(conn: &mut S) -> String {
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"{}") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_reaches_new_connections_and_held_ones_keep_working() {
    let up = TestRegistry::start().await;
    let ca = TestCa::new();
    let served = ca.issue("served", 2090);
    let mut berth = https_berth(&up, &served, "");
    let port = berth.port();
    assert_eq!(served_expiry(port), "notAfter=Jan  1 00:00:00 2090 GMT");

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut held = tokio_rustls::TlsConnector::from(ca.rustls_client())
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(ask(&mut held).await, "HTTP/1.1 200 OK");

    // Rotated on disk: picked up without a restart.
    rotate(&ca.issue("next", 2085), &served);
    wait_for_expiry(port, "notAfter=Jan  1 00:00:00 2085 GMT").await;
    assert_eq!(ask(&mut held).await, "HTTP/1.1 200 OK");

    // A broken file at reload: the old certificate stays, and says why.
    std::fs::write(&served.cert, "not a certificate").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !berth.log().contains("certificates not reloaded") {
        assert!(Instant::now() < deadline, "{}", berth.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        berth.log().contains("holds no CERTIFICATE block"),
        "{}",
        berth.log()
    );
    assert_eq!(served_expiry(port), "notAfter=Jan  1 00:00:00 2085 GMT");
    let metrics = metrics(&ca, &format!("localhost:{port}")).await;
    assert!(
        metrics
            .contains(r#"berth_tls_certificate_loads_total{source="reload",outcome="failed"} 1"#),
        "{metrics}"
    );

    // SIGHUP reloads too.
    let fixed = ca.issue("fixed", 2080);
    rotate(&fixed, &served);
    Command::new("kill")
        .args(["-HUP", &berth.pid().to_string()])
        .status()
        .unwrap();
    wait_for_expiry(port, "notAfter=Jan  1 00:00:00 2080 GMT").await;
    assert!(berth.log().contains("why=\"SIGHUP\""), "{}", berth.log());
    assert_eq!(ask(&mut held).await, "HTTP/1.1 200 OK");
    assert!(berth.terminate(Duration::from_secs(10)).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plain_listener_redirects_to_a_configured_name() {
    let up = TestRegistry::start().await;
    let ca = TestCa::new();
    let leaf = ca.issue_for("berth", &["mirror.test", "*.mirror.test"], 2090);
    let berth = https_berth(&up, &leaf, "redirect_listen = \"127.0.0.1:0\"\n");
    let plain = berth.side_url("redirect listener").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let path = "/v2/library/small/manifests/latest?ns=docker.io";
    let port = berth.port();
    for (host, location_host) in [
        ("docker.mirror.test", "docker.mirror.test"),
        ("mirror.test:80", "mirror.test"),
        ("evil.example", "mirror.test"),
    ] {
        let r = client
            .get(format!("{plain}{path}"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 308, "{host}");
        assert_eq!(
            r.headers()["location"],
            format!("https://{location_host}:{port}{path}").as_str(),
            "{host}"
        );
    }
}

#[test]
fn a_bad_certificate_or_key_stops_the_start_with_status_78() {
    let ca = TestCa::new();
    let good = ca.issue("good", 2090);
    let other = ca.issue("other", 2090);
    let expired = ca.issue("expired", 2021);
    let junk = ca.dir().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let upstream =
        "[[upstreams]]\nname = \"a.test\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n";
    let cases = [
        (
            LeafFiles {
                cert: good.cert.clone(),
                key: other.key.clone(),
            },
            other.key.display().to_string(),
            "is not the key of the certificate in",
        ),
        (
            expired.clone(),
            expired.cert.display().to_string(),
            "its certificate expired on 2021-01-01",
        ),
        (
            LeafFiles {
                cert: junk.clone(),
                key: good.key.clone(),
            },
            junk.display().to_string(),
            "is not a PEM file",
        ),
        (
            LeafFiles {
                cert: good.key.clone(),
                key: good.key.clone(),
            },
            good.key.display().to_string(),
            "holds no CERTIFICATE block",
        ),
    ];
    for (files, file, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let body = format!("{upstream}{}", files.tls_toml());
        let (status, stderr) = berth_testkit::berth::serve_until_exit(
            &body,
            &dir.path().join("data"),
            Duration::from_secs(20),
        )
        .expect("berth started with a bad certificate");
        assert_eq!(status.code(), Some(78), "{stderr}");
        assert!(
            stderr.contains(&file) && stderr.contains(reason),
            "{stderr}"
        );
    }
}
