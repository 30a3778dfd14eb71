//! End-to-end test support: a real upstream registry (distribution 2.8 with
//! Docker-Hub-style token auth, seeded with deterministic images, behind a
//! counting tap) and real clients (skopeo, podman, containerd) to point at a
//! mirror. Every process binds to 127.0.0.1 and is killed by PID on drop.
//!
//! Each test binary uses a different subset, hence the first `allow`s; and
//! as test support, it reports failures by panicking, like the tests do.
#![allow(dead_code, unused_imports, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod berth;
pub mod checks;
pub mod clients;
pub mod containerd;
pub mod distribution;
pub mod fake_upstream;
pub mod images;
pub mod jwt;
pub mod proc;
pub mod registry;
pub mod tap;
pub mod token;

pub use berth::{Berth, upstream_toml};
pub use clients::{
    Containerd, Skopeo, podman_pull, podman_pull_with, skopeo_copy_to_dir, skopeo_inspect_raw,
    write_hosts_toml,
};
pub use images::{Blob, ChildManifest, TestImage, TestImages, test_images};
pub use registry::Upstream;
pub use tap::Recorded;
pub use token::{TokenIssuer, TokenRequest};
