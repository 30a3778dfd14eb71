//! The binary as an operator meets it: embedded defaults, config errors,
//! a taken port, stale temp files, and a graceful SIGTERM.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::Layout;
use berth_testkit as testkit;

use berth_testkit::{Berth, TestRegistry, upstream_toml};
use std::process::Command;
use std::time::Duration;

fn berth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env_remove("BERTH_CONFIG")
        .env_remove("BERTH_LISTEN")
        .env_remove("BERTH_DATA_DIR");
    c
}

/// `berth COMMAND --config PATH`, run to the end.
fn with_config(command: &str, path: &std::path::Path) -> std::process::Output {
    berth()
        .args([command, "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_defaults_run_without_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = berth()
        .args(["serve"])
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map(Result::unwrap)
        .find(|l| l.contains("listening on http://"))
        .unwrap();
    let addr = line
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let health = reqwest::get(format!("http://{addr}/healthz")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.unwrap().status(), 200);
    // The default data directory was created in the working directory.
    assert!(Layout::new(dir.path().join("berth-data")).blobs().is_dir());

    let out = berth().args(["check-config"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("upstream docker.io -> https://registry-1.docker.io/ (default)"),
        "{text}"
    );
    assert!(text.contains("upstream ghcr.io"), "{text}");
    // Short by default: nothing set, the built-ins one line each; --full
    // writes every setting and every built-in out.
    assert!(text.lines().count() < 60, "{text}");
    assert!(
        text.contains("\n# ghcr.io -> https://ghcr.io/ (built-in"),
        "{text}"
    );
    assert!(!text.contains("builtin_upstreams"), "{text}");
    let full = berth().args(["check-config", "--full"]).output().unwrap();
    let full = String::from_utf8_lossy(&full.stdout);
    assert!(full.contains("name = \"ghcr.io\""), "{full}");
    assert!(full.contains("builtin_upstreams = false"), "{full}");
    assert!(full.contains("connection_buffer = \"4MiB\""), "{full}");
    assert!(full.contains("eager_bytes = \"2GiB\""), "{full}");
}

#[test]
fn bad_config_names_the_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\ntag_ttl = \"often\"\ncolour = \"blue\"\n").unwrap();
    for cmd in ["serve", "check-config"] {
        let out = with_config(cmd, &path);
        assert_eq!(out.status.code(), Some(78), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("upstreams[0].tag_ttl")
                && err.contains("upstreams[0].colour: unknown key"),
            "{err}"
        );
    }
    std::fs::write(
        &path,
        "[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\ntag_ttl = \"often\"\n",
    )
    .unwrap();
    let out = with_config("check-config", &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        err.contains("upstreams[0].tag_ttl: not a duration"),
        "{err}"
    );
    let missing = berth()
        .args(["check-config", "--config", "/nonexistent/berth.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read file"));
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = berth()
        .args(["serve"])
        .env("BERTH_LISTEN", addr.to_string())
        .env("BERTH_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("already in use"),
        "{err}"
    );
}

#[test]
fn stale_spool_files_are_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(Layout::new(&data).tmp()).unwrap();
    std::fs::write(data.join("tmp/123-leftover"), b"half a blob").unwrap();
    let b = Berth::start_with_data(
        &upstream_toml("docker.io", "http://127.0.0.1:9", "default = true"),
        &data,
    );
    assert_eq!(
        std::fs::read_dir(Layout::new(&data).tmp()).unwrap().count(),
        0
    );
    assert!(
        b.log().contains("removed unfinished downloads"),
        "{}",
        b.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_downloads() {
    let up = TestRegistry::start().await;
    let blob = up.images().big.largest_blob().clone();
    let mut b = Berth::start(&upstream_toml("docker.io", &up.url(), "default = true"));
    up.set_throttle(Some(Duration::from_micros(100)));
    let url = format!("{}/v2/library/big/blobs/{}", b.url(), blob.digest);
    let mut response = reqwest::get(&url).await.unwrap();
    let mut received = response.chunk().await.unwrap().unwrap().to_vec();
    // The stop has begun while the download is still under way.
    b.send_terminate();
    assert!(b.logged("shutting down"), "{}", b.log());
    let terminated = tokio::task::spawn_blocking(move || {
        let status = b.wait_exit(Duration::from_secs(30));
        (status, b)
    });
    while let Some(c) = response.chunk().await.unwrap() {
        received.extend_from_slice(&c);
    }
    assert_eq!(testkit::checks::sha256(&received), blob.digest);
    let (status, b) = terminated.await.unwrap();
    assert!(status.expect("berth exits after draining").success());
    let log = b.log();
    assert!(
        log.contains("shutting down") && log.contains("drained"),
        "{log}"
    );
}

#[test]
fn check_config_proves_the_data_dir_and_shows_routes_and_serve_says_a_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    let upstream = "[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\ndefault = true\nhost_prefix = \"a\"\naliases = [\"alpha\"]\nmirrors = [\"https://mirror.a.io\"]\n";
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\ndata_dir = \"/proc/x\"\nbuiltin_upstreams = false\n{upstream}"),
    )
    .unwrap();
    let out = with_config("check-config", &path);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data_dir /proc/x: cannot be created"), "{err}");
    let out = with_config("serve", &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("ERROR"), "{err}");

    let data = dir.path().join("new/data");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ndomain = \"m.example\"\nbuiltin_upstreams = false\n{upstream}",
            data.display().to_string()
        ),
    )
    .unwrap();
    let out = with_config("check-config", &path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "domain m.example",
        "upstream a.io -> https://a.io/ (default)",
        "host prefix a",
        "aliases alpha",
        "mirror https://mirror.a.io/",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(
        !dir.path().join("new").exists(),
        "check-config left the directory behind"
    );
}

#[test]
fn help_names_the_defaults_and_environment_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for text in [
        format!("[default: {}]", berth_config::DEFAULT_LISTEN),
        format!("[default: {}]", berth_config::DEFAULT_DATA_DIR),
        "BERTH_LISTEN".to_owned(),
        "BERTH_DATA_DIR".to_owned(),
        "BERTH_LOG_LEVEL".to_owned(),
        "BERTH_CONFIG".to_owned(),
    ] {
        assert!(help.contains(&text), "{text:?} missing from:\n{help}");
    }
    let embedded = berth_config::Config::embedded(&|_| None).unwrap();
    for upstream in &embedded.upstreams {
        let shown = if upstream.name == "docker.io" {
            "Docker Hub"
        } else {
            upstream.name.as_str()
        };
        assert!(help.contains(shown), "{shown} missing from:\n{help}");
    }
}

#[test]
fn a_command_whose_reader_is_gone_ends_quietly() {
    // A pipe whose reading end is closed before berth starts: its first
    // write fails, every time (as with `berth check-config | head`).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let data = tempfile::tempdir().unwrap();
    let out = berth()
        .arg("check-config")
        .env("BERTH_DATA_DIR", data.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
