//! Real registry clients pointed at a mirror: skopeo and podman, each run
//! with private temp dirs and configs so the host's registries.conf, policy,
//! credentials and image store never leak in, and with their fallback
//! registry on a closed port so nothing can reach the internet. containerd
//! lives in `containerd` and is re-exported here. All helpers are async (the
//! mirror under test may be served by the test's own runtime).

use super::proc::run_async;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;
use tokio::process::Command;

pub use super::containerd::{Containerd, write_hosts_toml, write_hosts_toml_ca};

/// How long one client invocation may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);
/// A loopback port nothing listens on: the "real" registry for fallbacks.
pub const CLOSED: &str = "127.0.0.1:9";

/// Writes `registries.conf` and `auth.json` into `dir` for pulling `image`
/// through `mirror` (None: no mirror, direct references only). The image's
/// registry (Docker Hub for bare names) gets its `location` on [`CLOSED`].
/// Mirror credentials go into the auth file under the mirror's host: these
/// clients never send `--creds` to a mirror on another host.
pub fn write_containers_config(
    dir: &Path,
    image: &str,
    mirror: Option<&str>,
    creds: Option<(&str, &str)>,
) {
    write_containers_config_tls(dir, image, mirror, creds, false);
}

/// [`write_containers_config`], with the mirror on verified HTTPS when
/// `verified` (the CA then comes from the client's `--cert-dir`).
pub fn write_containers_config_tls(
    dir: &Path,
    image: &str,
    mirror: Option<&str>,
    creds: Option<(&str, &str)>,
    verified: bool,
) {
    let insecure = !verified;
    let registries = match mirror {
        None => String::new(),
        Some(location) => format!(
            "unqualified-search-registries = []\n\n\
             [[registry]]\nprefix = \"{}\"\nlocation = \"{CLOSED}\"\ninsecure = true\n\n\
             [[registry.mirror]]\nlocation = \"{location}\"\ninsecure = {insecure}\n",
            registry_of(image)
        ),
    };
    std::fs::write(dir.join("registries.conf"), registries).expect("write registries.conf");
    let auths = match (mirror, creds) {
        (Some(location), Some((u, p))) => {
            let host = location.split('/').next().unwrap_or_default();
            let auth = data_encoding::BASE64.encode(format!("{u}:{p}").as_bytes());
            serde_json::json!({"auths": {host: {"auth": auth}}})
        }
        _ => serde_json::json!({}),
    };
    std::fs::write(dir.join("auth.json"), auths.to_string()).expect("write auth.json");
    std::fs::write(
        dir.join("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("write policy.json");
}

/// The registry part of an image name; a bare name means Docker Hub.
fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// `skopeo` isolated from the host: policy, registries.conf and auth file
/// from `scratch` (see [`write_containers_config`], called here without a
/// mirror), plus an empty registries.d. skopeo 1.9 ignores
/// `CONTAINERS_REGISTRIES_CONF`; the hidden `--registries-conf` works.
pub fn isolated_skopeo(scratch: &Path) -> StdCommand {
    if !scratch.join("registries.conf").exists() {
        write_containers_config(scratch, "", None, None);
    }
    let registries_d = scratch.join("registries.d");
    std::fs::create_dir_all(&registries_d).expect("create registries.d");
    let mut cmd = StdCommand::new("skopeo");
    cmd.env("REGISTRY_AUTH_FILE", scratch.join("auth.json"))
        .env("DOCKER_CONFIG", scratch)
        .arg("--registries-conf")
        .arg(scratch.join("registries.conf"))
        .arg("--policy")
        .arg(scratch.join("policy.json"))
        .arg("--registries.d")
        .arg(&registries_d)
        .arg("--tmpdir")
        .arg(scratch);
    cmd
}

/// A skopeo invocation against a plain-HTTP registry, directly or through
/// a mirror configured in registries.conf.
#[derive(Debug, Clone, Default)]
pub struct Skopeo {
    creds: Option<(String, String)>,
    all: bool,
    mirror: Option<String>,
    cert_dir: Option<std::path::PathBuf>,
}

impl Skopeo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticate as `user` instead of anonymously.
    pub fn creds(mut self, user: &str, password: &str) -> Self {
        self.creds = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Copy every platform of an index (`--all`), not just linux/amd64.
    pub fn all(mut self) -> Self {
        self.all = true;
        self
    }

    /// Reach the image's registry through this mirror location, like podman
    /// ("127.0.0.1:PORT" or "127.0.0.1:PORT/ghcr.io"); references are then
    /// image names such as "docker.io/library/small:latest".
    pub fn mirror(mut self, location: &str) -> Self {
        self.mirror = Some(location.to_owned());
        self
    }

    /// Reach the mirror over HTTPS, verified against the CA certificates
    /// in `dir` (`--src-cert-dir`), never insecurely.
    pub fn verify_with(mut self, dir: &Path) -> Self {
        self.cert_dir = Some(dir.to_owned());
        self
    }

    /// `skopeo copy docker://SRC dir:DEST`; `src_ref` is "host:port/repo:tag"
    /// (or an image name in mirror mode). skopeo copies into a `dir:` one
    /// blob at a time.
    pub async fn copy_to_dir(&self, src_ref: &str, dest_dir: &Path) -> Result<(), String> {
        self.copy(src_ref, &format!("dir:{}", dest_dir.display()))
            .await
    }

    /// `skopeo copy docker://SRC oci:DEST:image`: into an OCI layout, which
    /// skopeo fills with several blobs at once.
    pub async fn copy_to_oci(&self, src_ref: &str, dest_dir: &Path) -> Result<(), String> {
        self.copy(src_ref, &format!("oci:{}:image", dest_dir.display()))
            .await
    }

    async fn copy(&self, src_ref: &str, dest: &str) -> Result<(), String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cmd = self.command(scratch.path(), src_ref);
        cmd.args(["copy", "--quiet"]);
        match &self.cert_dir {
            Some(dir) => {
                cmd.arg("--src-cert-dir").arg(dir);
            }
            None => {
                cmd.arg("--src-tls-verify=false");
            }
        }
        if let Some(flag) = self.creds_flag("--src-creds", "--src-no-creds") {
            cmd.args(flag);
        }
        if self.all {
            cmd.arg("--all");
        }
        cmd.arg(format!("docker://{src_ref}")).arg(dest);
        run_async(&mut Command::from(cmd), CLIENT_TIMEOUT)
            .await
            .map(drop)
    }

    /// `skopeo inspect --raw`: the manifest bytes exactly as served.
    pub async fn inspect_raw(&self, src_ref: &str) -> Result<Vec<u8>, String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cmd = self.command(scratch.path(), src_ref);
        cmd.args(["inspect", "--raw", "--tls-verify=false"]);
        if let Some(flag) = self.creds_flag("--creds", "--no-creds") {
            cmd.args(flag);
        }
        cmd.arg(format!("docker://{src_ref}"));
        run_async(&mut Command::from(cmd), CLIENT_TIMEOUT).await
    }

    fn command(&self, scratch: &Path, src_ref: &str) -> StdCommand {
        let creds = self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        let verified = self.cert_dir.is_some();
        write_containers_config_tls(scratch, src_ref, self.mirror.as_deref(), creds, verified);
        isolated_skopeo(scratch)
    }

    /// Direct mode: explicit credentials or explicitly none. Mirror mode:
    /// neither, so the auth file (keyed by the mirror host) is used.
    fn creds_flag(&self, with: &str, without: &str) -> Option<Vec<String>> {
        if self.mirror.is_some() {
            return None;
        }
        Some(match &self.creds {
            Some((u, p)) => vec![with.to_owned(), format!("{u}:{p}")],
            None => vec![without.to_owned()],
        })
    }
}

/// `skopeo copy --src-tls-verify=false docker://SRC dir:DEST`, anonymously.
pub async fn skopeo_copy_to_dir(src_ref: &str, dest_dir: &Path) -> Result<(), String> {
    Skopeo::new().copy_to_dir(src_ref, dest_dir).await
}

/// `skopeo inspect --raw docker://SRC`, anonymously.
pub async fn skopeo_inspect_raw(src_ref: &str) -> Result<Vec<u8>, String> {
    Skopeo::new().inspect_raw(src_ref).await
}

/// Pulls `image` (e.g. "docker.io/library/small:latest") with podman through
/// the mirror `mirror_location` ("127.0.0.1:PORT" or "127.0.0.1:PORT/ns").
/// Returns the digest podman records for the image (for an index: the
/// index's digest). A failing pull takes about 3 s: podman retries 3 times.
pub async fn podman_pull(mirror_location: &str, image: &str) -> Result<String, String> {
    podman_pull_with(mirror_location, image, None).await
}

/// [`podman_pull`] with optional mirror credentials `(user, password)`.
pub async fn podman_pull_with(
    mirror_location: &str,
    image: &str,
    creds: Option<(&str, &str)>,
) -> Result<String, String> {
    podman_pull_tls(mirror_location, image, creds, None).await
}

/// [`podman_pull_with`]; with `cert_dir`, the mirror is on HTTPS verified
/// against the CA certificates in it (`--cert-dir`).
pub async fn podman_pull_tls(
    mirror_location: &str,
    image: &str,
    creds: Option<(&str, &str)>,
    cert_dir: Option<&Path>,
) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let verified = cert_dir.is_some();
    write_containers_config_tls(d, image, Some(mirror_location), creds, verified);
    std::fs::write(d.join("containers.conf"), "").map_err(|e| e.to_string())?;
    let storage = format!(
        "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
        d.join("root").display(),
        d.join("runroot").display()
    );
    std::fs::write(d.join("storage.conf"), storage).map_err(|e| e.to_string())?;

    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("REGISTRY_AUTH_FILE", d.join("auth.json"))
            .env("DOCKER_CONFIG", d)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .args(args);
        cmd
    };
    let policy = d.join("policy.json").display().to_string();
    let certs = cert_dir.map(|c| c.display().to_string());
    let mut pull = vec!["pull", "--quiet", "--signature-policy", &policy];
    if let Some(certs) = &certs {
        pull.extend(["--cert-dir", certs]);
    }
    pull.push(image);
    run_async(&mut podman(&pull), CLIENT_TIMEOUT).await?;
    let inspect = ["image", "inspect", "--format", "{{.Digest}}", image];
    let out = run_async(&mut podman(&inspect), CLIENT_TIMEOUT).await?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}
