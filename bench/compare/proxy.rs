//! The anchor users compare with: distribution 2.8 (`docker-registry serve`)
//! as a pull-through cache (`proxy.remoteurl`) in front of the upstream,
//! with its own temp storage and no auth of its own. The config is Debian's
//! stock one (in-memory blob descriptor cache, default info logging) plus
//! the `proxy` section. Killed by PID on drop.

use berth_testkit::proc::{ChildGuard, free_port, http_status};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// A running distribution proxy with fresh storage.
#[derive(Debug)]
pub(crate) struct DistProxy {
    addr: SocketAddr,
    child: ChildGuard,
    dir: tempfile::TempDir,
}

impl DistProxy {
    /// Starts a proxy of `remote_url` (authenticating as puller/pullpass).
    pub(crate) fn start(remote_url: &str) -> DistProxy {
        let mut last = String::new();
        // A free port can be taken between probing and binding: retry.
        for _ in 0..5 {
            match Self::try_start(remote_url, free_port()) {
                Ok(p) => return p,
                Err(e) => last = e,
            }
        }
        panic!("distribution proxy did not start: {last}");
    }

    fn try_start(remote_url: &str, port: u16) -> Result<DistProxy, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = format!(
            "version: 0.1\nlog:\n  fields:\n    service: registry\n\
             storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    \
             rootdirectory: {:?}\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: \"{addr}\"\n  secret: berth-bench-secret\n  headers:\n    \
             X-Content-Type-Options: [nosniff]\n\
             proxy:\n  remoteurl: \"{remote_url}\"\n  username: puller\n  password: pullpass\n",
            dir.path().join("storage").display().to_string()
        );
        let config_path = dir.path().join("proxy.yml");
        std::fs::write(&config_path, config).expect("write proxy config");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config_path);
        let mut child = ChildGuard::spawn(
            "docker-registry (proxy)",
            &mut cmd,
            &dir.path().join("proxy.log"),
            Some(port),
        );
        child.wait_ready(Duration::from_secs(20), || {
            http_status(addr, "/v2/") == Some(200)
        })?;
        Ok(DistProxy { addr, child, dir })
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Whether the proxy has stored the blob `digest` ("sha256:...").
    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
            .exists()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.pid().expect("proxy is running")
    }
}
