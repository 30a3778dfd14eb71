//! A hostile or broken upstream against the real binary: credentials in
//! URLs, token realms on other ports, token refresh under load, redirects
//! to other origins, trickled manifests and an upstream that never answers.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::upstream_toml;
use std::process::Command;

#[test]
fn credentials_in_an_upstream_url_are_refused_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    let body = upstream_toml(
        "fake.test",
        "http://user:hunter2secret@127.0.0.1:9",
        "default = true\nmirrors = [\"http://127.0.0.1:10\", \"http://me:hunter2secret@127.0.0.1:11\"]",
    );
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\nbuiltin_upstreams = false\n{body}"),
    )
    .unwrap();
    for cmd in ["check-config", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([cmd, "--config"])
            .arg(&path)
            .env_remove("BERTH_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {stdout}{stderr}");
        assert!(
            stderr.contains("upstreams[0].url")
                && stderr.contains("upstreams[0].mirrors[1]")
                && stderr.contains("password_file"),
            "{cmd}: {stderr}"
        );
        assert!(
            !stdout.contains("hunter2") && !stderr.contains("hunter2"),
            "{cmd}: {stdout}{stderr}"
        );
    }
}
