//! End-to-end test support: a real upstream registry (distribution 2.8 with
//! Docker-Hub-style token auth, seeded with deterministic images, behind a
//! counting tap) and real clients (skopeo, podman, containerd) to point at a
//! mirror. Every process binds to 127.0.0.1 and is killed by PID on drop.
//!
//! The end-to-end tests and the benchmarks share it: one berth process
//! harness, one fake upstream, one tap. As test support, it reports
//! failures by panicking, like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bench_image;
pub mod berth;
pub mod checks;
pub mod chromium;
pub mod clients;
pub mod containerd;
pub mod distribution;
pub mod dockerd;
pub mod fake_upstream;
pub mod geoip;
pub mod images;
pub mod jwt;
pub mod pebble;
pub mod proc;
pub mod redis;
pub mod registry;
pub mod report;
pub mod s3;
pub mod tap;
pub mod tls;
pub mod token;

pub use berth::{Berth, upstream_toml};
pub use clients::{
    Containerd, Skopeo, isolated_skopeo, podman_pull, podman_pull_tls, podman_pull_with,
    skopeo_copy_to_dir, skopeo_inspect_raw, write_hosts_toml, write_hosts_toml_ca,
};
pub use images::{Blob, ChildManifest, TestImage, TestImages, test_images};
pub use redis::RedisServer;
pub use registry::{PushedImage, TestRegistry};
pub use s3::S3Server;
pub use tap::Recorded;
pub use token::{TokenIssuer, TokenRequest};

/// The directory cargo builds into (`target/` unless `CARGO_TARGET_DIR`
/// moves it), found from the running test or benchmark executable, which
/// lives in `<target>/<profile>/deps/`.
pub fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The `berth` binary of the same build as the running test or benchmark.
/// Cargo builds it for every integration test and benchmark of the `berth`
/// package.
pub fn berth_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_berth") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .ancestors()
        .nth(2)
        .expect("the test executable lives in <target>/<profile>/deps");
    profile_dir.join("berth")
}
