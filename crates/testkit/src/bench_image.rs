//! Benchmark images, larger than the test suite's: built once per recipe
//! by `fixtures/build-bench-image.sh` (cached under the cargo target dir),
//! pushed into an upstream with skopeo (bypassing the tap), and described
//! as the registry stored them.

use crate::TestRegistry;
use crate::clients::isolated_skopeo;
use crate::images::{DOCKER_MANIFEST, built_once};
use crate::proc::run;
use std::path::{Path, PathBuf};

const SCRIPT: &str = include_str!("../fixtures/build-bench-image.sh");
const TAG: &str = "latest";

/// An image as the upstream serves it.
#[derive(Debug, Clone)]
pub struct BenchImage {
    /// e.g. "library/gib"
    pub repository: String,
    /// The exact manifest bytes.
    pub manifest: Vec<u8>,
    /// (digest, size) of the config blob.
    pub config: (String, u64),
    /// (digest, size) of each layer, in order.
    pub layers: Vec<(String, u64)>,
}

impl BenchImage {
    /// Manifest, config and layers, in bytes.
    pub fn size(&self) -> u64 {
        self.manifest.len() as u64 + self.config.1 + self.layers.iter().map(|l| l.1).sum::<u64>()
    }

    /// "library/gib:latest"
    pub fn reference(&self) -> String {
        format!("{}:{TAG}", self.repository)
    }

    /// "/v2/library/gib/manifests/latest"
    pub fn manifest_path(&self) -> String {
        format!("/v2/{}/manifests/{TAG}", self.repository)
    }

    /// "/v2/library/gib/blobs/sha256:..." of `digest`.
    pub fn blob_path(&self, digest: &str) -> String {
        format!("/v2/{}/blobs/{digest}", self.repository)
    }

    /// The config, then every layer.
    pub fn blobs(&self) -> impl Iterator<Item = &(String, u64)> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// Pushes an image of `layers` layers of `mib` MiB each (built on first
/// use) into `up` as `repository:latest`, and describes it.
pub async fn push(up: &TestRegistry, repository: &str, mib: u32, layers: u32) -> BenchImage {
    let registry = up.registry_url();
    let host = registry.trim_start_matches("http://").to_owned();
    let dest = format!("docker://{host}/{repository}:{TAG}");
    tokio::task::spawn_blocking(move || {
        let layout = layout(mib, layers);
        let scratch = tempfile::tempdir().expect("temp dir");
        let mut cmd = isolated_skopeo(scratch.path());
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(["--dest-creds", "pusher:pushpass", "--format", "v2s2"])
            .arg(format!("oci:{}:gib", layout.display()))
            .arg(dest);
        run(&mut cmd).unwrap_or_else(|e| panic!("pushing a bench image: {e}"));
    })
    .await
    .expect("push task");

    let token = up
        .issuer()
        .mint(&[&format!("repository:{repository}:pull")], None);
    let response = reqwest::Client::new()
        .get(format!("{registry}/v2/{repository}/manifests/{TAG}"))
        .bearer_auth(token)
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .await
        .expect("GET bench manifest");
    assert_eq!(response.status(), 200, "GET bench manifest");
    let bytes = response.bytes().await.expect("manifest body");
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    let desc = |v: &serde_json::Value| {
        (
            v["digest"].as_str().expect("digest").to_owned(),
            v["size"].as_u64().expect("size"),
        )
    };
    let layers: Vec<(String, u64)> = json["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(desc)
        .collect();
    BenchImage {
        repository: repository.to_owned(),
        manifest: bytes.to_vec(),
        config: desc(&json["config"]),
        layers,
    }
}

/// The OCI layout holding tag `gib`, built once per recipe under the cargo
/// target dir.
fn layout(mib: u32, layers: u32) -> PathBuf {
    let recipe = format!("{SCRIPT}\n{mib}\n{layers}");
    let key = &berth_oci::Digest::of(recipe.as_bytes()).hex()[..16];
    let cache = format!("berth-bench-image-{mib}x{layers}");
    let dir = built_once(&cache, key, |tmp| {
        eprintln!("building the {layers} x {mib} MiB bench image (once)...");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build-bench-image.sh");
        run(std::process::Command::new("sh")
            .arg(&script)
            .arg(tmp.join("layout"))
            .arg(mib.to_string())
            .arg(layers.to_string()))
        .unwrap_or_else(|e| panic!("{e}"));
    });
    dir.join("layout")
}
