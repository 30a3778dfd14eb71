//! `Upstream`: the Docker-Hub-like upstream a test points berth at. It owns a
//! token issuer, a docker-registry serving a private copy of the seeded
//! storage, and the counting tap in front of it (the URL berth uses). It can
//! be stopped and restarted to simulate outages; dropping it kills everything.

use super::distribution::Distribution;
use super::images::{TestImages, test_images};
use super::proc::wait_port_free;
use super::tap::{Recorded, Tap, TapState};
use super::token::TokenIssuer;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An image a test pushed ([`Upstream::push_image`]).
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// Digest of its manifest.
    pub digest: String,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// Config first, then layers.
    pub blobs: Vec<String>,
}

/// A running upstream registry behind a counting tap.
#[derive(Debug)]
pub struct TestRegistry {
    images: &'static TestImages,
    tap: Option<Tap>,
    tap_port: u16,
    tap_state: Arc<TapState>,
    registry: Option<Distribution>,
    issuer: TokenIssuer,
    storage: tempfile::TempDir,
}

impl TestRegistry {
    /// Builds/seeds the test images if needed, then starts the issuer, a
    /// registry on a fresh copy of the seeded storage, and the tap.
    pub async fn start() -> TestRegistry {
        tokio::task::spawn_blocking(TestRegistry::start_blocking)
            .await
            .expect("starting upstream")
    }

    /// [`Upstream::start`] for tests without a runtime.
    pub fn start_blocking() -> TestRegistry {
        let started = Instant::now();
        let images = test_images();
        let storage = tempfile::tempdir().expect("temp dir");
        super::proc::run(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", images.storage.display()))
                .arg(storage.path()),
        )
        .unwrap_or_else(|e| panic!("copy seed storage: {e}"));
        let issuer = TokenIssuer::start();
        let registry = Distribution::start(storage.path(), &issuer.realm(), &issuer.cert_path());
        let tap_state = Arc::new(TapState::default());
        let tap = Tap::start(0, registry.addr(), tap_state.clone()).expect("start tap");
        if std::env::var_os("BERTH_TEST_VERBOSE").is_some() {
            eprintln!(
                "upstream ready in {:?} at http://{}",
                started.elapsed(),
                tap.addr()
            );
        }
        TestRegistry {
            images,
            tap_port: tap.addr().port(),
            tap: Some(tap),
            tap_state,
            registry: Some(registry),
            issuer,
            storage,
        }
    }

    /// The tap's base URL, e.g. "http://127.0.0.1:PORT": what berth uses.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The tap's address (stays the same across stop/restart).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tap_port))
    }

    /// "127.0.0.1:PORT" of the tap.
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// The registry's own URL, bypassing the tap (and its counting).
    /// Panics while stopped.
    pub fn registry_url(&self) -> String {
        let registry = self.registry.as_ref().expect("upstream is stopped");
        format!("http://{}", registry.addr())
    }

    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    pub fn images(&self) -> &'static TestImages {
        self.images
    }

    /// The registry's storage root (a private copy; tests may corrupt it).
    pub fn storage_dir(&self) -> &Path {
        self.storage.path()
    }

    /// Every request that went through the tap, in response order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.tap_state.records()
    }

    /// Every request but the anonymous `GET /v2/` berth sends at start to
    /// learn the challenge (it lands whenever it lands).
    pub fn requests_beyond_ping(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !(r.method == "GET" && r.path == "/v2/" && !r.authorized))
            .collect()
    }

    /// Forget the requests recorded so far.
    pub fn reset_requests(&self) {
        self.tap_state.clear();
    }

    /// Requests with this method whose path contains `path_substring`.
    pub fn count(&self, method: &str, path_substring: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_substring))
            .count()
    }

    /// Requests (any method) whose path contains `path_substring`.
    pub fn count_path(&self, path_substring: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.contains(path_substring))
            .count()
    }

    /// Sleep this long before forwarding each request (None: no delay).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.tap_state.set_delay(delay);
    }

    /// Sleep this long after each response body frame (None: full speed).
    pub fn set_throttle(&self, per_frame: Option<Duration>) {
        self.tap_state.set_throttle(per_frame);
    }

    /// Cap each response body at `bytes_per_sec` (None: full speed).
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        self.tap_state.set_rate(bytes_per_sec);
    }

    /// Answer the next `count` requests with `status` without forwarding them.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.tap_state.fail_next(count, status);
    }

    /// Upstream outage: kills the registry and closes the tap, so connecting
    /// to [`Upstream::url`] is refused. The token issuer keeps running (use
    /// `issuer().set_down(true)` for a token outage).
    pub fn stop(&mut self) {
        if let Some(tap) = self.tap.take() {
            drop(tap);
            if !wait_port_free(self.tap_port, Duration::from_secs(10)) {
                panic!("tap port {} still open after stop", self.tap_port);
            }
        }
        if let Some(mut registry) = self.registry.take() {
            registry.stop();
        }
    }

    /// Ends an outage: starts the registry again on the same storage and the
    /// tap on the same port. Recorded requests are kept.
    pub fn restart(&mut self) {
        self.stop();
        let registry = Distribution::start(
            self.storage.path(),
            &self.issuer.realm(),
            &self.issuer.cert_path(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let tap = loop {
            match Tap::start(self.tap_port, registry.addr(), self.tap_state.clone()) {
                Ok(tap) => break tap,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("rebind tap on port {}: {e}", self.tap_port),
            }
        };
        self.tap = Some(tap);
        self.registry = Some(registry);
    }

    /// Point `repo:tag` at a new manifest, as a push to the registry would
    /// (directly, not through the tap). The manifest's blobs must be in
    /// the repository already.
    pub async fn push_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) {
        let token = self
            .issuer
            .mint(&[&format!("repository:{repo}:pull,push")], Some("pusher"));
        let response = reqwest::Client::new()
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.registry_url()))
            .bearer_auth(token)
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT manifest");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "push {repo}:{tag}: {body}");
    }

    /// Push an image of the given layers (each stored as it is given) with
    /// a small config of its own as `repo:tag` (directly, not through the
    /// tap), and describe it.
    pub async fn push_image(&self, repo: &str, tag: &str, layers: &[Vec<u8>]) -> PushedImage {
        let token = self
            .issuer
            .mint(&[&format!("repository:{repo}:pull,push")], Some("pusher"));
        let client = reqwest::Client::new();
        let base = self.registry_url();
        let upload = |bytes: Vec<u8>| {
            let (client, token, base) = (client.clone(), token.clone(), base.clone());
            async move {
                let digest = crate::checks::sha256(&bytes);
                let started = client
                    .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("start a blob upload");
                assert_eq!(started.status(), 202, "start a blob upload");
                let location = started.headers()["location"].to_str().unwrap().to_owned();
                let url = url::Url::parse(&base).unwrap().join(&location).unwrap();
                let sep = if url.query().is_some() { '&' } else { '?' };
                let size = bytes.len() as u64;
                let done = client
                    .put(format!("{url}{sep}digest={digest}"))
                    .bearer_auth(&token)
                    .header("content-type", "application/octet-stream")
                    .body(bytes)
                    .send()
                    .await
                    .expect("finish a blob upload");
                assert_eq!(done.status(), 201, "finish a blob upload");
                (digest, size)
            }
        };
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"org.berth.test":"{repo}:{tag}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let (config_digest, config_size) = upload(config.into_bytes()).await;
        let mut pushed = Vec::new();
        for layer in layers {
            pushed.push(upload(layer.clone()).await);
        }
        let descriptor = |media_type: &str, (digest, size): &(String, u64)| {
            format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
        };
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            crate::images::DOCKER_MANIFEST,
            descriptor(
                "application/vnd.docker.container.image.v1+json",
                &(config_digest.clone(), config_size)
            ),
            pushed
                .iter()
                .map(|l| descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", l))
                .collect::<Vec<_>>()
                .join(",")
        );
        self.push_manifest(
            repo,
            tag,
            crate::images::DOCKER_MANIFEST,
            manifest.as_bytes(),
        )
        .await;
        PushedImage {
            digest: crate::checks::sha256(manifest.as_bytes()),
            manifest: manifest.into_bytes(),
            blobs: std::iter::once(config_digest)
                .chain(pushed.into_iter().map(|(d, _)| d))
                .collect(),
        }
    }

    /// Whether the upstream is currently serving.
    pub fn is_running(&self) -> bool {
        self.tap.is_some()
    }

    /// What the registry logged so far (warnings and errors).
    pub fn registry_log(&self) -> String {
        self.registry
            .as_ref()
            .map(Distribution::log)
            .unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // Tap first, so nothing new reaches the registry while it dies.
        self.tap.take();
        if let Some(mut registry) = self.registry.take() {
            registry.stop();
        }
    }
}
