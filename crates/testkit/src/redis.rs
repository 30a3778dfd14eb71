//! Redis for the cluster tests: Debian's `redis-server` on a loopback port,
//! without persistence, stopped by PID. It can be stopped and started
//! again on the same port (empty, as a Redis that lost its data), and serve
//! TLS only (`rediss://`) with a certificate from a test CA.

use crate::proc::{ChildGuard, free_port, wait_port_free};
use std::process::Command;
use std::time::Duration;

/// A running redis-server. Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    server: Option<ChildGuard>,
    port: u16,
    dir: tempfile::TempDir,
    /// Its certificate and key, when it speaks TLS only.
    tls: Option<crate::tls::LeafFiles>,
}

impl RedisServer {
    /// Start redis-server on a free port.
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            server: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            tls: None,
        };
        redis.start_again();
        redis
    }

    /// Start redis-server speaking TLS only, with a certificate `ca`
    /// signed for 127.0.0.1; clients need no certificate of their own.
    pub fn start_tls(ca: &crate::tls::TestCa) -> RedisServer {
        let mut redis = RedisServer {
            server: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            tls: Some(ca.issue("redis", 2100)),
        };
        redis.start_again();
        redis
    }

    /// Start it (again, after [`RedisServer::stop`]) on the same port.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "redis-server is running");
        let port = self.port;
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        match &self.tls {
            None => command.args(["--port", &port.to_string()]),
            Some(leaf) => command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&leaf.cert)
                .arg("--tls-key-file")
                .arg(&leaf.key)
                .args(["--tls-auth-clients", "no"]),
        };
        let mut server = ChildGuard::spawn(
            "redis-server",
            &mut command,
            &self.dir.path().join("redis.log"),
            Some(port),
        );
        server
            .wait_ready(Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .unwrap_or_else(|e| panic!("{e}\n(install it with `apt-get install redis-server`)"));
        self.server = Some(server);
    }

    /// Stop it and wait until its port is free.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
        assert!(wait_port_free(self.port, Duration::from_secs(20)));
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://` when it speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }
}
