//! pebble, the ACME test server, with pebble-challtestsrv as its DNS (every
//! name resolves to 127.0.0.1), both on loopback ports of their own.
//! pebble checks HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of
//! each name: point them at berth's listeners. Its own HTTPS uses a
//! certificate from the test's CA; the certificates it issues chain to a
//! root served on its management port.

use crate::proc::{ChildGuard, free_port};
use crate::tls::TestCa;
use std::process::Command;
use std::time::Duration;

/// A running pebble and its DNS. Killed on drop.
#[derive(Debug)]
pub struct Pebble {
    _pebble: ChildGuard,
    _dns: ChildGuard,
    /// `https://127.0.0.1:PORT/dir`
    pub directory_url: String,
    management: u16,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Start pebble issuing certificates valid for `validity_secs`.
    pub fn start(ca: &TestCa, http_port: u16, tls_port: u16, validity_secs: u64) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let (dns_port, dns_management) = (free_port(), free_port());
        let mut dns = ChildGuard::spawn(
            "pebble-challtestsrv",
            Command::new("pebble-challtestsrv")
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv6", ""])
                .arg("-management")
                .arg(format!("127.0.0.1:{dns_management}"))
                .arg("-dns01")
                .arg(format!("127.0.0.1:{dns_port}")),
            &dir.path().join("dns.log"),
            Some(dns_management),
        );
        dns.wait_ready(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", dns_management)).is_ok()
        })
        .unwrap();
        let (port, management) = (free_port(), free_port());
        let leaf = ca.issue("pebble", 2090);
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": leaf.cert,
            "privateKey": leaf.key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut pebble = ChildGuard::spawn(
            "pebble",
            Command::new("pebble")
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .arg("-config")
                .arg(&config_path)
                .arg("-dnsserver")
                .arg(format!("127.0.0.1:{dns_port}")),
            &dir.path().join("pebble.log"),
            Some(port),
        );
        pebble
            .wait_ready(Duration::from_secs(15), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && std::net::TcpStream::connect(("127.0.0.1", management)).is_ok()
            })
            .unwrap();
        Pebble {
            _pebble: pebble,
            _dns: dns,
            directory_url: format!("https://127.0.0.1:{port}/dir"),
            management,
            _dir: dir,
        }
    }

    /// The root the issued certificates chain to (PEM).
    pub async fn root(&self, ca: &TestCa) -> String {
        let url = format!("https://localhost:{}/roots/0", self.management);
        ca.client()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// What pebble logged.
    pub fn log(&self) -> String {
        self._pebble.log()
    }
}
