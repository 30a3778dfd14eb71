//! An S3-compatible server for the tests: s3s-fs on a loopback port,
//! checking SigV4 signatures, with one bucket. A bucket is a directory
//! under its root, so a test can list what the bucket holds from disk.
//! s3s-fs is a cargo-installed tool (`cargo install s3s-fs --features
//! binary`): looked up on `PATH`, then in `~/.cargo/bin`.

use crate::proc::{ChildGuard, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running s3s-fs with one bucket. Killed on drop.
#[derive(Debug)]
pub struct S3Server {
    server: Option<ChildGuard>,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
    /// The access key it accepts.
    pub access_key: String,
    /// Its secret.
    pub secret_key: String,
    port: u16,
    root: tempfile::TempDir,
}

/// The s3s-fs executable.
fn executable() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        Path::new(&home).join(".cargo/bin/s3s-fs")
    })
}

impl S3Server {
    /// Start s3s-fs with the bucket `berth-test`.
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        let bucket = "berth-test".to_owned();
        std::fs::create_dir(root.path().join(&bucket)).unwrap();
        let (access_key, secret_key) = ("berthtestkey".to_owned(), "berth-test-secret".to_owned());
        let port = free_port();
        let mut s3 = S3Server {
            server: None,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            access_key,
            secret_key,
            port,
            root,
        };
        s3.start_again();
        s3
    }

    /// Start the server (again, after [`S3Server::stop`]) on the same port
    /// and directory: it holds what it held.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "s3s-fs is running");
        let port = self.port;
        let log = self.root.path().join("s3s-fs.log");
        let mut server = ChildGuard::spawn(
            "s3s-fs",
            Command::new(executable())
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--access-key",
                    &self.access_key,
                    "--secret-key",
                    &self.secret_key,
                ])
                .arg(self.root.path()),
            &log,
            Some(port),
        );
        server
            .wait_ready(Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .unwrap_or_else(|e| {
                panic!("{e}\n(install it with `cargo install s3s-fs@0.14.1 --features binary --locked`)")
            });
        self.server = Some(server);
    }

    /// The `[storage]` table of a berth keeping its blobs here.
    pub fn storage_toml(&self) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\npath_style = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            self.bucket, self.endpoint, self.access_key, self.secret_key
        )
    }

    /// Every key in the bucket, sorted (read from the server's directory).
    pub fn keys(&self) -> Vec<String> {
        let bucket = self.root.path().join(&self.bucket);
        let mut keys = Vec::new();
        let mut dirs = vec![bucket.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(key) = path.strip_prefix(&bucket) {
                    keys.push(key.to_string_lossy().into_owned());
                }
            }
        }
        keys.sort();
        keys
    }

    /// The files of multipart uploads the server holds open (s3s-fs keeps
    /// an upload's parts and record as `.upload…` files until it is
    /// completed or aborted).
    pub fn open_uploads(&self) -> Vec<String> {
        let mut open = Vec::new();
        let mut dirs = vec![self.root.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    dirs.push(path);
                } else if name.contains(".upload") {
                    open.push(name);
                }
            }
        }
        open
    }

    /// Wait (at most 30 s) until the server holds no multipart upload open.
    pub async fn until_no_upload_open(&self) {
        crate::checks::until(
            std::time::Duration::from_secs(30),
            || self.open_uploads().is_empty(),
            || format!("{:?}", self.open_uploads()),
        )
        .await;
    }

    /// The server's process id while it runs (to pause it).
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(ChildGuard::pid)
    }

    /// How many multipart uploads the server holds open (one
    /// `.upload-<id>.json` record each).
    pub fn uploads_open(&self) -> usize {
        self.open_uploads()
            .iter()
            .filter(|name| name.starts_with(".upload-") && name.ends_with(".json"))
            .count()
    }

    /// The bytes of the object `key`, if the bucket holds it.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.path().join(&self.bucket).join(key)).ok()
    }

    /// Stop the server (requests then fail to connect).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}
