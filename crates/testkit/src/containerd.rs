//! A throw-away containerd 1.6 daemon (own config, root, state dir and unix
//! socket in a temp dir; no CRI) and `ctr images pull` through a mirror
//! configured by a `hosts.toml`. Every pull uses a fresh namespace, and the
//! daemon shares no content between namespaces, so each pull is cold.

use super::clients::{CLIENT_TIMEOUT, CLOSED};
use super::proc::{ChildGuard, run_async};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Command;

const TEMPLATE: &str = include_str!("../fixtures/containerd.toml");

/// A running containerd. Dropping it kills the daemon by PID.
#[derive(Debug)]
pub struct Containerd {
    child: ChildGuard,
    socket: PathBuf,
    pulls: AtomicUsize,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts the daemon and waits until `ctr version` answers.
    pub async fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir_in("/tmp") // unix socket paths must stay short
            .expect("temp dir");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let config = TEMPLATE
            .replace("@ROOT@", &d.join("root").display().to_string())
            .replace("@STATE@", &d.join("state").display().to_string())
            .replace("@SOCKET@", &socket.display().to_string());
        std::fs::write(d.join("config.toml"), config).expect("write containerd config");
        let mut cmd = std::process::Command::new("containerd");
        cmd.arg("--config").arg(d.join("config.toml"));
        let child = ChildGuard::spawn("containerd", &mut cmd, &d.join("containerd.log"), None);
        let mut me = Containerd {
            child,
            socket,
            pulls: AtomicUsize::new(0),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut version = me.ctr("default", &["version"]);
            if run_async(&mut version, Duration::from_secs(5))
                .await
                .is_ok()
            {
                return me;
            }
            if let Some(status) = me.child.exited() {
                panic!("containerd exited with {status}:\n{}", me.child.log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd not ready:\n{}",
                me.child.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn log(&self) -> String {
        self.child.log()
    }

    /// `ctr images pull --hosts-dir HOSTS_DIR --snapshotter native IMAGE`
    /// (image like "docker.io/library/small:latest") in a fresh namespace.
    /// Returns the digest containerd resolved the reference to.
    pub async fn ctr_pull(&self, image: &str, hosts_dir: &Path) -> Result<String, String> {
        self.ctr_pull_as(image, hosts_dir, None).await
    }

    /// [`Containerd::ctr_pull`] with optional credentials "user:password".
    pub async fn ctr_pull_as(
        &self,
        image: &str,
        hosts_dir: &Path,
        user: Option<&str>,
    ) -> Result<String, String> {
        self.pull(image, hosts_dir, user, None).await
    }

    /// [`Containerd::ctr_pull`] as a node of another platform would
    /// (`--platform linux/arm64`): it takes that platform's manifest.
    pub async fn ctr_pull_platform(
        &self,
        image: &str,
        hosts_dir: &Path,
        platform: &str,
    ) -> Result<String, String> {
        self.pull(image, hosts_dir, None, Some(platform)).await
    }

    async fn pull(
        &self,
        image: &str,
        hosts_dir: &Path,
        user: Option<&str>,
        platform: Option<&str>,
    ) -> Result<String, String> {
        let ns = format!("berth-test-{}", self.pulls.fetch_add(1, Ordering::SeqCst));
        let hosts = hosts_dir.display().to_string();
        let mut args = vec![
            "images",
            "pull",
            "--hosts-dir",
            &hosts,
            "--snapshotter",
            "native",
        ];
        if let Some(u) = user {
            args.extend(["--user", u]);
        }
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.push(image);
        let mut pull = self.ctr(&ns, &args);
        run_async(&mut pull, CLIENT_TIMEOUT).await?;
        let mut ls = self.ctr(&ns, &["images", "ls"]);
        let out = run_async(&mut ls, CLIENT_TIMEOUT).await?;
        let out = String::from_utf8_lossy(&out);
        // REF TYPE DIGEST SIZE PLATFORMS LABELS
        out.lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.first() == Some(&image)).then(|| cols.get(2).map(|d| (*d).to_owned()))
            })
            .flatten()
            .next()
            .ok_or_else(|| format!("{image} not in `ctr images ls`:\n{out}"))
    }

    fn ctr(&self, namespace: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", namespace])
            .args(args);
        cmd
    }

    /// Where the daemon keeps its root, state and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes `DIR/<registry>/hosts.toml` sending pulls of `registry` (e.g.
/// "docker.io") to `mirror_url` (e.g. "http://127.0.0.1:PORT"), with the
/// registry's own `server` on a closed port. With `override_path`, the mirror
/// URL is used as the full API root (containerd appends no `/v2`).
pub fn write_hosts_toml(
    dir: &Path,
    registry: &str,
    mirror_url: &str,
    override_path: bool,
) -> PathBuf {
    write_hosts_toml_ca(dir, registry, mirror_url, override_path, None)
}

/// [`write_hosts_toml`] with `ca = "<file>"`: an HTTPS mirror verified
/// against that CA certificate.
pub fn write_hosts_toml_ca(
    dir: &Path,
    registry: &str,
    mirror_url: &str,
    override_path: bool,
    ca: Option<&Path>,
) -> PathBuf {
    let reg_dir = dir.join(registry);
    std::fs::create_dir_all(&reg_dir).expect("create hosts dir");
    let mut toml = format!(
        "server = \"http://{CLOSED}\"\n\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    if override_path {
        toml.push_str("  override_path = true\n");
    }
    if let Some(ca) = ca {
        toml.push_str(&format!("  ca = {:?}\n", ca.display().to_string()));
    }
    std::fs::write(reg_dir.join("hosts.toml"), toml).expect("write hosts.toml");
    dir.to_owned()
}
