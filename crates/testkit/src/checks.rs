//! Assertions shared by the end-to-end tests: what a user would check after
//! a pull (manifest bytes and blob digests on disk) and small HTTP helpers.

use crate::TestImage;
use std::path::Path;

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    berth_oci::Digest::of(bytes).to_string()
}

/// A `skopeo copy ... dir:DEST` result holds exactly the image: the
/// manifest bytes as pushed, and every blob with the right digest.
pub fn assert_dir_holds(dest: &Path, image: &TestImage) {
    let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
    assert_eq!(
        sha256(&manifest),
        image.digest,
        "manifest of {}",
        image.reference()
    );
    for blob in &image.blobs {
        let bytes = std::fs::read(dest.join(blob.digest.trim_start_matches("sha256:")))
            .unwrap_or_else(|e| panic!("blob {} missing: {e}", blob.digest));
        assert_eq!(bytes.len() as u64, blob.size);
        assert_eq!(sha256(&bytes), blob.digest);
    }
}

/// A JSON body.
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// The body of an OCI error answer: (code, message).
pub async fn oci_error(response: reqwest::Response) -> (String, String) {
    let body = json(response).await;
    let first = &body["errors"][0];
    (
        first["code"].as_str().unwrap_or_default().to_owned(),
        first["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `len` bytes that look random and differ per `seed`: test blobs whose
/// digest is fixed by the arguments.
pub fn pseudo_random(len: u32, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8)
        .collect()
}

/// GET `url` with `Range: bytes=first-last` and check the 206 answer:
/// its `Content-Range` (of `blob`'s length) and its bytes.
pub async fn assert_range(
    client: &reqwest::Client,
    url: &str,
    (first, last): (usize, usize),
    blob: &[u8],
) {
    let part = client
        .get(url)
        .header("range", format!("bytes={first}-{last}"))
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes {first}-{last}/{}", blob.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), &blob[first..=last]);
}

/// Send a request line exactly as written (no URL normalisation) and
/// return the status code and body.
pub async fn raw_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Poll `cond` every 50 ms until it holds; after `limit`, fail with what
/// `context` says of the state then.
pub async fn until(
    limit: std::time::Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{}", context());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Whether berth commits `digest` within 10 s. A client receives the last
/// byte once the blob is verified; the commit (fsync, rename) follows.
pub async fn eventually_cached(data_dir: &Path, digest: &str) -> bool {
    for _ in 0..200 {
        if cached(data_dir, digest) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Whether berth's cache holds a committed blob.
pub fn cached(data_dir: &Path, digest: &str) -> bool {
    blob_path(data_dir, digest).exists()
}

/// Where berth stores the committed blob `digest` under `data_dir`.
pub fn blob_path(data_dir: &Path, digest: &str) -> std::path::PathBuf {
    let digest: berth_oci::Digest = digest.parse().expect("a sha256 digest");
    berth_cache::Layout::new(data_dir).blob(&digest)
}

/// The value of the sample `name{labels}` in Prometheus text, 0 when absent
/// (a counter not yet incremented is not printed).
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
