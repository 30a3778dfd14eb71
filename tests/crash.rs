//! Crash safety: kill -9 in the middle of ten concurrent downloads leaves
//! no partial blob visible; a restart sweeps the leftovers and pulls again
//! correctly; `berth cache verify` finds and quarantines a tampered blob.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_cache::Layout;
use berth_testkit as testkit;
use berth_testkit::checks::blob_path;

use berth_testkit::checks::sha256;
use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};
use bytes::Bytes;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Every file under blobs/ hashes to its name.
fn assert_store_consistent(data: &Path) -> usize {
    let mut count = 0;
    for shard in std::fs::read_dir(Layout::new(data).blobs()).unwrap() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert_eq!(
                sha256(&std::fs::read(&path).unwrap()),
                format!("sha256:{name}"),
                "partial or corrupt blob visible"
            );
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_fill_loses_nothing_and_leaves_nothing_partial() {
    let fake = FakeUpstream::start().await;
    let mut blobs = Vec::new();
    for i in 0..10u32 {
        let data: Vec<u8> = (0..(2u32 << 20))
            .map(|j| (j.wrapping_mul(31).wrapping_add(i * 7919) >> 3) as u8)
            .collect();
        let digest = sha256(&data);
        fake.route(
            &format!("proj/app/blobs/{digest}"),
            Canned {
                body: Bytes::from(data),
                content_type: "application/octet-stream",
                pieces: 40,
                pause: Duration::from_millis(50),
                ..Canned::default()
            },
        );
        blobs.push(digest);
    }
    let config = upstream_toml("fake.test", &fake.url, "default = true");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut berth = Berth::start_with_data(&config, &data);
    let client = reqwest::Client::new();
    let mut readers = Vec::new();
    for digest in &blobs {
        let mut response = client
            .get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.chunk().await.unwrap();
        readers.push(response);
    }
    berth.kill9();
    for mut r in readers {
        while let Ok(Some(_)) = r.chunk().await {}
    }
    assert_eq!(assert_store_consistent(&data), 0, "no fill had finished");
    assert!(
        std::fs::read_dir(Layout::new(&data).tmp()).unwrap().count() >= 10,
        "spools were left behind"
    );

    let berth = Berth::start_with_data(&config, &data);
    assert_eq!(
        std::fs::read_dir(Layout::new(&data).tmp()).unwrap().count(),
        0
    );
    assert!(berth.log().contains("removed unfinished downloads"));
    let gets = futures_util::future::join_all(blobs.iter().map(|digest| {
        let url = format!("{}/v2/proj/app/blobs/{digest}", berth.url());
        let client = client.clone();
        async move {
            sha256(
                &client
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap_or_default(),
            )
        }
    }))
    .await;
    assert_eq!(gets, blobs, "{}", berth.log());
    for digest in &blobs {
        assert!(testkit::checks::eventually_cached(&data, digest).await);
    }
    assert_eq!(assert_store_consistent(&data), 10);

    // Tamper with one cached blob: verify reports it, then quarantines it.
    let victim = &blobs[3];
    let hex = victim.trim_start_matches("sha256:");
    std::fs::write(blob_path(&data, victim), b"bit rot").unwrap();
    let verify = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["cache", "verify", "--config"])
            .arg(berth.config_path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = verify(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(hex) && text.contains("9 blobs verified, 1 corrupt, 0 quarantined"),
        "{text}"
    );
    let out = verify(&["--quarantine"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 quarantined"));
    assert!(Layout::new(&data).quarantine().join(hex).exists());
    assert!(verify(&[]).status.success());
    // The quarantined blob is fetched again, correctly.
    let again = client
        .get(format!("{}/v2/proj/app/blobs/{victim}", berth.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(&sha256(&again.bytes().await.unwrap()), victim);
}
