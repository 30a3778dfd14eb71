//! A full or failing cache disk: berth keeps serving verified blobs straight
//! from upstream and counts it. The cache
//! lives on a small tmpfs mounted for the test (needs root, as the suite
//! runs).

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::Layout;
use berth_testkit::checks::{cached, eventually_cached, pseudo_random};
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted for the test's lifetime.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn blob(fake: &FakeUpstream, seed: u32, size: u32, chunked: bool) -> (String, Vec<u8>) {
    let data = pseudo_random(size, seed);
    let canned = Canned {
        chunked,
        pieces: if chunked { 24 } else { 1 },
        pause: Duration::from_millis(5),
        ..Canned::default()
    };
    (fake.blob(&data, canned), data)
}

async fn get(berth: &Berth, digest: &str) -> Result<Vec<u8>, usize> {
    let mut r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => return Ok(body),
            Err(_) => return Err(body.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_serves_uncached_then_caches_again() {
    let fake = FakeUpstream::start().await;
    let (a, _) = blob(&fake, 1, 3 << 20, false);
    let (b, b_data) = blob(&fake, 2, 6 << 20, false);
    let (c, c_data) = blob(&fake, 3, 6 << 20, true);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _disk = SmallDisk::mount(&data, "8m");
    let berth = Berth::start_with_data(
        &upstream_toml("fake.test", &fake.url, "default = true"),
        &data,
    );

    assert!(get(&berth, &a).await.is_ok());
    assert!(eventually_cached(&data, &a).await);

    // Known size, no room: streamed directly, verified, not cached.
    assert_eq!(get(&berth, &b).await.unwrap(), b_data);
    assert!(!cached(&data, &b));
    assert!(
        berth.log().contains("no room in the cache"),
        "{}",
        berth.log()
    );

    // Unknown size: the write fails part-way; that response is aborted...
    assert!(get(&berth, &c).await.is_err());
    // ...and meanwhile downloads bypass the cache and still succeed.
    assert_eq!(get(&berth, &c).await.unwrap(), c_data);
    assert!(!cached(&data, &c));
    let metrics = berth.metrics().await;
    assert!(
        metrics.contains("berth_cache_write_failures_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"berth_cache_events_total{kind="blob",outcome="direct"} 2"#),
        "{metrics}"
    );
    assert_eq!(
        std::fs::read_dir(Layout::new(&data).tmp()).unwrap().count(),
        0
    );

    // That caching resumes once the bypass window has passed is checked in
    // the in-process tier (crates/http/tests/in_process.rs), which advances
    // the clock instead of sleeping through the window.
    drop(berth);
}
