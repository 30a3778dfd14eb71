//! The deterministic test images: built once per cargo target dir (OCI layout
//! via `fixtures/build-images.sh`), pushed once into a seed registry storage
//! directory, and described by `TestImages`, read back from what the registry
//! actually stored (never hard-coded). Builds are keyed by a hash of the
//! recipe and serialised across test binaries with a file lock.

use super::clients::isolated_skopeo;
use super::distribution::Distribution;
use super::proc::run;
use super::token::TokenIssuer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SCRIPT: &str = include_str!("../fixtures/build-images.sh");
/// Everything that decides the seeded content; a change rebuilds.
const RECIPE: [&str; 3] = [
    SCRIPT,
    include_str!("images.rs"),
    include_str!("../fixtures/registry.yml"),
];

/// Media types the seeded images use.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A blob a manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// A platform manifest inside an index or manifest list.
#[derive(Debug, Clone)]
pub struct ChildManifest {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// "os/arch", e.g. "linux/arm64".
    pub platform: String,
    /// The exact bytes the registry serves.
    pub manifest: Vec<u8>,
    /// Config first, then layers.
    pub blobs: Vec<Blob>,
}

/// One image as seeded upstream.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// Upstream repository, e.g. "library/small".
    pub repository: String,
    /// The main tag ("latest").
    pub tag: String,
    /// Every tag pointing at this manifest.
    pub tags: Vec<String>,
    /// Digest of the tagged manifest (or index/list).
    pub digest: String,
    pub media_type: String,
    /// The exact manifest bytes the registry serves.
    pub manifest: Vec<u8>,
    /// Config first, then layers; for an index/list, every child's blobs.
    pub blobs: Vec<Blob>,
    /// For an index/list: its platform manifests; otherwise empty.
    pub children: Vec<ChildManifest>,
}

impl TestImage {
    /// "library/small:latest"
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// "/v2/library/small/manifests/latest"
    pub fn manifest_path(&self) -> String {
        format!("/v2/{}/manifests/{}", self.repository, self.tag)
    }

    /// "/v2/library/small/blobs/sha256:..."
    pub fn blob_path(&self, blob: &Blob) -> String {
        format!("/v2/{}/blobs/{}", self.repository, blob.digest)
    }

    /// The biggest blob (the 48 MiB layer of `big`).
    pub fn largest_blob(&self) -> &Blob {
        self.blobs
            .iter()
            .max_by_key(|b| b.size)
            .expect("image has blobs")
    }

    pub fn is_index(&self) -> bool {
        !self.children.is_empty()
    }
}

/// All seeded images plus where their bytes live on disk.
#[derive(Debug)]
pub struct TestImages {
    /// library/small:latest and :v1 (Docker v2s2, 2 layers).
    pub small: TestImage,
    /// library/big:latest (Docker v2s2, one 48 MiB layer).
    pub big: TestImage,
    /// library/multi:latest (OCI index, linux/amd64 + linux/arm64).
    pub multi: TestImage,
    /// library/multi-docker:latest (Docker manifest list of the same).
    pub multi_docker: TestImage,
    /// private/small:latest (same content as small; needs credentials).
    pub private_small: TestImage,
    /// private/secret:latest (content in no other repository; needs
    /// credentials).
    pub private_secret: TestImage,
    /// The OCI layout the images were built into (tags small, big, multi).
    pub layout: PathBuf,
    /// The seeded registry storage root; copy it, never write to it.
    pub storage: PathBuf,
}

impl TestImages {
    pub fn all(&self) -> [&TestImage; 6] {
        [
            &self.small,
            &self.big,
            &self.multi,
            &self.multi_docker,
            &self.private_small,
            &self.private_secret,
        ]
    }

    /// The on-disk file holding the bytes of `digest` in the seed storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        blob_data(&self.storage, digest)
    }

    /// The bytes of any blob or manifest by digest.
    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_file(digest)).expect("read seeded blob")
    }
}

/// The images, built and seeded on first use (blocking; safe to call from
/// several threads and test binaries at once).
pub fn test_images() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    // A plain thread, so the seeding may drive its own runtime even when the
    // caller is inside one.
    IMAGES.get_or_init(|| {
        std::thread::spawn(prepare)
            .join()
            .expect("preparing test images")
    })
}

fn prepare() -> TestImages {
    let mut hasher = berth_oci::DigestHasher::new();
    for part in RECIPE {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    let key = &hasher.finish().hex()[..16];
    load(&built_once("berth-test-images", key, build))
}

/// The directory `build` fills for `key`, built once per key under the
/// cargo target dir (`<target>/tmp/<cache>/<key>`) and kept across runs.
/// Processes that need it at once wait for one build (a file lock); a
/// half-done build is redone, and builds of other keys are removed.
pub fn built_once(cache: &str, key: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let root = crate::target_dir().join("tmp").join(cache);
    std::fs::create_dir_all(&root).expect("create image cache dir");
    let lock = std::fs::File::create(root.join(format!("{key}.lock"))).expect("create lock file");
    lock.lock().expect("lock image cache");
    let dir = root.join(key);
    if !dir.join("ready").exists() {
        remove_other_builds(&root, key);
        let tmp = root.join(format!("{key}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).expect("remove stale build");
        }
        std::fs::create_dir_all(&tmp).expect("create build dir");
        build(&tmp);
        std::fs::write(tmp.join("ready"), key).expect("write marker");
        std::fs::rename(&tmp, &dir).expect("publish build");
    }
    dir
}

/// Drops builds of older keys.
fn remove_other_builds(root: &Path, key: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(key) {
            continue;
        }
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Builds the OCI layout and pushes every image into `dir/storage`.
fn build(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build-images.sh");
    let layout = dir.join("layout");
    run(std::process::Command::new("sh").arg(&script).arg(&layout))
        .unwrap_or_else(|e| panic!("{e}"));

    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).expect("create storage");
    let issuer = TokenIssuer::start();
    let registry = Distribution::start(&storage, &issuer.realm(), &issuer.cert_path());
    let scratch = tempfile::tempdir().expect("temp dir");
    let v2s2: &[&str] = &["--format", "v2s2"];
    let pushes: [(&str, &str, &[&str]); 7] = [
        ("small", "library/small:latest", v2s2),
        ("small", "library/small:v1", v2s2),
        ("small", "private/small:latest", v2s2),
        ("secret", "private/secret:latest", v2s2),
        ("big", "library/big:latest", v2s2),
        // No --format: the OCI index and its OCI manifests stay as built.
        ("multi", "library/multi:latest", &["--all"]),
        // skopeo turns the index into a Docker manifest list.
        (
            "multi",
            "library/multi-docker:latest",
            &["--all", "--format", "v2s2"],
        ),
    ];
    for (tag, dest, extra) in pushes {
        let mut cmd = isolated_skopeo(scratch.path());
        cmd.args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            "pusher:pushpass",
        ])
        .args(extra)
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{}/{dest}", registry.addr()));
        run(&mut cmd)
            .unwrap_or_else(|e| panic!("seeding {dest}: {e}\nregistry log:\n{}", registry.log()));
    }
}

fn load(dir: &Path) -> TestImages {
    let storage = dir.join("storage");
    let image = |repo: &str, tags: &[&str]| read_image(&storage, repo, tags);
    let images = TestImages {
        small: image("library/small", &["latest", "v1"]),
        big: image("library/big", &["latest"]),
        multi: image("library/multi", &["latest"]),
        multi_docker: image("library/multi-docker", &["latest"]),
        private_small: image("private/small", &["latest"]),
        private_secret: image("private/secret", &["latest"]),
        layout: dir.join("layout"),
        storage,
    };
    assert_eq!(images.small.media_type, DOCKER_MANIFEST);
    assert_eq!(images.multi.media_type, OCI_INDEX);
    assert_eq!(images.multi_docker.media_type, DOCKER_LIST);
    assert!(images.big.largest_blob().size >= 48 << 20);
    images
}

fn read_image(storage: &Path, repo: &str, tags: &[&str]) -> TestImage {
    let link = storage
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tags[0])
        .join("current/link");
    let digest = std::fs::read_to_string(&link)
        .unwrap_or_else(|e| panic!("{}: {e}", link.display()))
        .trim()
        .to_owned();
    let manifest = std::fs::read(blob_data(storage, &digest)).expect("read manifest");
    let json: Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    let media_type = media_type_of(&json);
    let (blobs, children) = match json.get("manifests").and_then(Value::as_array) {
        None => (blobs_of(&json), Vec::new()),
        Some(list) => {
            let children: Vec<ChildManifest> =
                list.iter().map(|d| read_child(storage, d)).collect();
            let blobs = children.iter().flat_map(|c| c.blobs.clone()).collect();
            (blobs, children)
        }
    };
    TestImage {
        repository: repo.to_owned(),
        tag: tags[0].to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        digest,
        media_type,
        manifest,
        blobs,
        children,
    }
}

fn read_child(storage: &Path, desc: &Value) -> ChildManifest {
    let digest = str_field(desc, "digest");
    let manifest = std::fs::read(blob_data(storage, &digest)).expect("read child manifest");
    let json: Value = serde_json::from_slice(&manifest).expect("child manifest JSON");
    let platform = &desc["platform"];
    ChildManifest {
        media_type: str_field(desc, "mediaType"),
        size: desc["size"].as_u64().expect("descriptor size"),
        platform: format!(
            "{}/{}",
            str_field(platform, "os"),
            str_field(platform, "architecture")
        ),
        blobs: blobs_of(&json),
        digest,
        manifest,
    }
}

/// `mediaType` if present, else inferred (umoci's OCI manifests omit it).
fn media_type_of(json: &Value) -> String {
    match json.get("mediaType").and_then(Value::as_str) {
        Some(mt) => mt.to_owned(),
        None if json.get("manifests").is_some() => OCI_INDEX.to_owned(),
        None => OCI_MANIFEST.to_owned(),
    }
}

fn blobs_of(manifest: &Value) -> Vec<Blob> {
    let layers = manifest["layers"].as_array().expect("manifest layers");
    std::iter::once(&manifest["config"])
        .chain(layers)
        .map(|d| Blob {
            digest: str_field(d, "digest"),
            size: d["size"].as_u64().expect("descriptor size"),
            media_type: str_field(d, "mediaType"),
        })
        .collect()
}

fn str_field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing {key} in {v}"))
        .to_owned()
}

fn blob_data(storage: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}
