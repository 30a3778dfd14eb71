//! The 1 GiB single-layer image, built only for this benchmark (the test
//! suite's images stay small): `bench/build-big-image.sh` makes an OCI
//! layout once per recipe, cached under the cargo target dir; each run
//! pushes it with skopeo into the upstream registry (bypassing the tap) and
//! reads back what the registry stored.

use berth_testkit::Upstream;
use berth_testkit::clients::isolated_skopeo;
use berth_testkit::images::{DOCKER_MANIFEST, built_once};
use berth_testkit::proc::run;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

const SCRIPT: &str = include_str!("../build-big-image.sh");
/// Size of the layer's one file.
const MIB: u32 = 1024;
pub(crate) const REPOSITORY: &str = "library/gib";
pub(crate) const TAG: &str = "latest";

/// The image as the upstream serves it.
#[derive(Debug, Clone)]
pub(crate) struct BigImage {
    pub(crate) manifest_len: u64,
    /// (digest, size) of the config blob.
    pub(crate) config: (String, u64),
    /// (digest, size) of the single layer.
    pub(crate) layer: (String, u64),
}

impl BigImage {
    /// Manifest + config + layer, in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.manifest_len + self.config.1 + self.layer.1
    }

    /// "library/gib:latest"
    pub(crate) fn reference(&self) -> String {
        format!("{REPOSITORY}:{TAG}")
    }

    /// "/v2/library/gib/blobs/sha256:..." of the layer.
    pub(crate) fn layer_path(&self) -> String {
        format!("/v2/{REPOSITORY}/blobs/{}", self.layer.0)
    }
}

/// Pushes the image (built on first use) into `up` and describes it.
pub(crate) async fn push(up: &Upstream) -> BigImage {
    let registry = up.registry_url();
    let host = registry.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let layout = layout();
        let scratch = tempfile::tempdir().expect("temp dir");
        let mut cmd = isolated_skopeo(scratch.path());
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(["--dest-creds", "pusher:pushpass", "--format", "v2s2"])
            .arg(format!("oci:{}:gib", layout.display()))
            .arg(format!("docker://{host}/{REPOSITORY}:{TAG}"));
        run(&mut cmd).unwrap_or_else(|e| panic!("pushing the big image: {e}"));
    })
    .await
    .expect("push task");

    let token = up
        .issuer()
        .mint(&[&format!("repository:{REPOSITORY}:pull")], None);
    let response = reqwest::Client::new()
        .get(format!("{registry}/v2/{REPOSITORY}/manifests/{TAG}"))
        .bearer_auth(token)
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .await
        .expect("GET big manifest");
    assert_eq!(response.status(), 200, "GET big manifest");
    let bytes = response.bytes().await.expect("manifest body");
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    let desc = |v: &serde_json::Value| {
        (
            v["digest"].as_str().expect("digest").to_owned(),
            v["size"].as_u64().expect("size"),
        )
    };
    let layers = json["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "the big image has one layer");
    BigImage {
        manifest_len: bytes.len() as u64,
        config: desc(&json["config"]),
        layer: desc(&layers[0]),
    }
}

/// The OCI layout holding tag `gib`, built once per recipe under the
/// cargo target dir.
fn layout() -> PathBuf {
    let mut hasher = Sha256::new();
    hasher.update(SCRIPT.as_bytes());
    hasher.update(MIB.to_le_bytes());
    let key = &hex::encode(hasher.finalize())[..16];
    let dir = built_once("berth-bench-images", key, |tmp| {
        eprintln!("building the {MIB} MiB bench image (once)...");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/build-big-image.sh");
        run(std::process::Command::new("sh")
            .arg(&script)
            .arg(tmp.join("layout"))
            .arg(MIB.to_string()))
        .unwrap_or_else(|e| panic!("{e}"));
    });
    dir.join("layout")
}
