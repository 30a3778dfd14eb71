//! Redis for the cluster tests: Debian's `redis-server` on a loopback port,
//! without persistence, stopped by PID. It can be stopped and started
//! again on the same port (empty, as a Redis that lost its data).

use crate::proc::{ChildGuard, free_port, wait_port_free};
use std::process::Command;
use std::time::Duration;

/// A running redis-server. Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    server: Option<ChildGuard>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start redis-server on a free port.
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            server: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.start_again();
        redis
    }

    /// Start it (again, after [`RedisServer::stop`]) on the same port.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "redis-server is running");
        let port = self.port;
        let mut server = ChildGuard::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path()),
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

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}
