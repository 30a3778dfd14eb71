//! One `docker-registry serve` process (distribution 2.8) with token auth:
//! renders `fixtures/registry.yml` for a storage dir and a token issuer,
//! starts it on a loopback port, waits until `GET /v2/` answers 401, and kills
//! it by PID when stopped or dropped.

use super::proc::{ChildGuard, free_port, http_status};
use super::token::{ISSUER, SERVICE};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TEMPLATE: &str = include_str!("../fixtures/registry.yml");
const BINARY: &str = "docker-registry";

/// A running registry. Dropping it kills the process.
#[derive(Debug)]
pub struct Distribution {
    addr: SocketAddr,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Distribution {
    /// Starts a registry serving `storage`, trusting tokens signed by the
    /// certificate at `cert` and sending clients to `realm` for tokens.
    pub fn start(storage: &Path, realm: &str, cert: &Path) -> Self {
        let mut last_err = String::new();
        // A free port can be taken between probing and binding: retry.
        for _ in 0..5 {
            match Self::try_start(storage, realm, cert, free_port()) {
                Ok(d) => return d,
                Err(e) => last_err = e,
            }
        }
        panic!("docker-registry did not start: {last_err}");
    }

    fn try_start(storage: &Path, realm: &str, cert: &Path, port: u16) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = TEMPLATE
            .replace("@STORAGE@", &storage.display().to_string())
            .replace("@ADDR@", &addr.to_string())
            .replace("@REALM@", realm)
            .replace("@SERVICE@", SERVICE)
            .replace("@ISSUER@", ISSUER)
            .replace("@ROOTCERT@", &cert.display().to_string());
        let config_path = dir.path().join("registry.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve").arg(&config_path);
        let mut child = ChildGuard::spawn(
            BINARY,
            &mut cmd,
            &dir.path().join("registry.log"),
            Some(port),
        );
        child.wait_ready(Duration::from_secs(20), || {
            http_status(addr, "/v2/") == Some(401)
        })?;
        Ok(Distribution {
            addr,
            child,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// What the registry logged so far (level warn and above).
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Kills the registry and waits until its port is free.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}
