//! Blob bodies sent with `sendfile` on plain HTTP/1: the bytes are exactly
//! the blob's, whether it is cached or still filling, across keep-alive
//! requests that mix file bodies with ordinary ones; HTTP/2 clients get the
//! same bytes streamed.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::{pseudo_random, sha256};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, TestRegistry, upstream_toml};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The value of a counter without labels in berth's `/metrics`.
async fn counter(berth: &Berth, name: &str) -> u64 {
    let text = berth.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_blobs_go_out_with_sendfile_and_http2_gets_the_same_bytes() {
    let up = TestRegistry::start().await;
    let blob = up.images().big.largest_blob().clone();
    let berth = Berth::hub(&up.url(), "");
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), blob.digest);
    let zero_copy = "berth_served_zero_copy_bytes_total";
    // A manifest first, so berth holds a token and the blob GET is the only
    // blob request upstream sees.
    let manifest = reqwest::get(format!("{}/v2/library/big/manifests/latest", berth.url()));
    assert_eq!(manifest.await.unwrap().status(), 200);
    assert_eq!(counter(&berth, zero_copy).await, 0);

    // Cold (sent from the spool while it fills), then warm (from the store).
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    for expected_cache in ["MISS", "HIT"] {
        let response = http1.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.headers()["x-cache"], expected_cache);
        assert_eq!(response.content_length(), Some(blob.size));
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len() as u64, blob.size);
        assert_eq!(sha256(&body), blob.digest);
    }
    assert_eq!(counter(&berth, zero_copy).await, 2 * blob.size);

    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = http2.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256(&body), blob.digest);
    assert_eq!(
        counter(&berth, zero_copy).await,
        2 * blob.size,
        "HTTP/2 bodies are streamed, not sent with sendfile"
    );
    assert_eq!(up.count("GET", &blob.digest), 1, "{:#?}", up.requests());
}

/// One response read off a keep-alive connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_answer(conn: &mut BufReader<tokio::net::TcpStream>, head_only: bool) -> Answer {
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let len: usize = answer.header("content-length").unwrap().parse().unwrap();
        answer.body = vec![0; len];
        conn.read_exact(&mut answer.body).await.unwrap();
    }
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn one_keep_alive_connection_mixes_file_bodies_with_other_answers() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let layer = small.largest_blob().clone();
    let expected = up.images().read_blob(&layer.digest);
    let big = up.images().big.largest_blob().clone();
    let berth = Berth::hub(&up.url(), "");
    let addr = berth.url().trim_start_matches("http://").to_owned();
    let blob_path = |d: &str, repo: &str| format!("/v2/library/{repo}/blobs/{d}");
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n").into_bytes()
    };

    // All requests are written at once (pipelined); answers come in order.
    let mut requests = Vec::new();
    requests.extend(get(&blob_path(&layer.digest, "small"), "")); // cold
    requests.extend(get(
        &blob_path(&layer.digest, "small"),
        "Range: bytes=10-19\r\n",
    ));
    requests.extend(get("/v2/library/small/manifests/latest", ""));
    requests.extend(get(&blob_path(&big.digest, "big"), "")); // cold, 48 MiB
    requests.extend(
        format!(
            "HEAD {} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
            blob_path(&layer.digest, "small")
        )
        .into_bytes(),
    );
    let missing = format!("sha256:{}", "0".repeat(64));
    requests.extend(get(&blob_path(&missing, "small"), ""));
    requests.extend(get(&blob_path(&layer.digest, "small"), "")); // warm
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut conn = BufReader::new(stream);
    conn.get_mut().write_all(&requests).await.unwrap();

    let full = read_answer(&mut conn, false).await;
    assert_eq!(full.status, 200);
    assert_eq!(sha256(&full.body), layer.digest);
    let part = read_answer(&mut conn, false).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &expected[10..20]);
    let manifest = read_answer(&mut conn, false).await;
    assert_eq!(manifest.status, 200);
    assert_eq!(
        Some(sha256(&manifest.body).as_str()),
        manifest.header("docker-content-digest")
    );
    let big_answer = read_answer(&mut conn, false).await;
    assert_eq!(big_answer.status, 200);
    assert_eq!(big_answer.body.len() as u64, big.size);
    assert_eq!(sha256(&big_answer.body), big.digest);
    let head = read_answer(&mut conn, true).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(layer.size.to_string().as_str())
    );
    let not_found = read_answer(&mut conn, false).await;
    assert_eq!(not_found.status, 404);
    assert!(String::from_utf8_lossy(&not_found.body).contains("BLOB_UNKNOWN"));
    let warm = read_answer(&mut conn, false).await;
    assert_eq!(warm.status, 200);
    assert_eq!(warm.header("x-cache"), Some("HIT"));
    assert_eq!(warm.body, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_of_unknown_size_goes_out_chunked_from_the_filling_spool() {
    let fake = FakeUpstream::start().await;
    let data = pseudo_random(5 << 20, 0);
    let digest = sha256(&data);
    fake.route(
        &format!("proj/app/blobs/{digest}"),
        Canned {
            body: bytes::Bytes::from(data.clone()),
            content_type: "application/octet-stream",
            chunked: true,
            pieces: 40,
            pause: Duration::from_millis(5),
            ..Canned::default()
        },
    );
    let berth = Berth::start(&upstream_toml("fake.test", &fake.url, "default = true"));
    let url = format!("{}/v2/proj/app/blobs/{digest}", berth.url());
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256(&body), digest);
    assert_eq!(
        counter(&berth, "berth_served_zero_copy_bytes_total").await,
        data.len() as u64
    );
}
