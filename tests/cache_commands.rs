//! `berth cache du`, `ls`, `gc` and `purge` against a store filled through
//! berth from the real upstream, run while berth serves it (and `purge`
//! without it); and the exit status of every cache command on a directory
//! that is not a store.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::eventually_cached;
use berth_testkit::{Berth, Skopeo, TestRegistry};
use std::process::{Command, Output};

fn cache(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("cache")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// skopeo pulls library/small and library/multi through `berth`.
async fn pull_small_and_multi(berth: &Berth) {
    for image in [
        "docker.io/library/small:latest",
        "docker.io/library/multi:latest",
    ] {
        let dest = tempfile::tempdir().unwrap();
        Skopeo::new()
            .mirror(&berth.addr)
            .copy_to_dir(image, &dest.path().join("image"))
            .await
            .unwrap();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_cache_command_refuses_a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    let missing = dir.path().join("nowhere");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", missing.display().to_string()),
    )
    .unwrap();
    for command in [
        &["verify"][..],
        &["du"],
        &["ls"],
        &["gc"],
        &["pin", "docker.io/library/*"],
        &["unpin", "docker.io/library/*"],
        &["purge", "docker.io/library/*"],
    ] {
        let out = cache(&config, command);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(66), "{command:?}: {err}");
        assert!(err.contains("is not a berth store"), "{command:?}: {err}");
        assert!(stdout(&out).is_empty(), "{command:?}");
    }
    assert!(!missing.exists(), "a cache command created the directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn du_ls_and_gc_describe_and_tidy_a_store_while_berth_serves_it() {
    let up = TestRegistry::start().await;
    let images = up.images();
    let berth = Berth::hub(&up.url(), "");
    pull_small_and_multi(&berth).await;
    for blob in &images.small.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
    }
    let config = berth.config_path();

    let du = cache(&config, &["du"]);
    assert!(du.status.success());
    let text = stdout(&du);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
            .to_owned()
    };
    // small: its manifest, config and two layers, 528 KiB and more.
    let small = line(" docker.io/library/small");
    assert!(small.contains(" 4 ") && small.contains("KiB"), "{small}");
    let multi = line(" docker.io/library/multi");
    assert!(!multi.contains(" 0 "), "{multi}");
    assert!(line(" total").contains("KiB"), "{text}");

    let ls = cache(&config, &["ls", "docker.io/library/s*"]);
    assert!(ls.status.success());
    let listed = stdout(&ls);
    assert!(
        listed.contains("docker.io/library/small:latest"),
        "{listed}"
    );
    assert!(listed.contains("s ago"), "{listed}");
    assert!(!listed.contains("multi"), "{listed}");
    // Short names mean what they mean in a pull: Docker Hub's.
    for short in ["small", "library/s*"] {
        let same = cache(&config, &["ls", short]);
        assert!(same.status.success(), "{short}");
        assert_eq!(stdout(&same), listed, "{short}");
        let said = String::from_utf8_lossy(&same.stderr);
        assert!(said.contains("docker.io/library/s"), "{short}: {said}");
    }
    let none = cache(&config, &["ls", "team/medium"]);
    assert!(none.status.success());
    assert_eq!(
        String::from_utf8_lossy(&none.stderr).lines().last(),
        Some("berth: no cached tag matches docker.io/team/medium")
    );
    let bad = cache(&config, &["ls", "docker.io//x"]);
    assert_eq!(bad.status.code(), Some(2));

    // gc removes a tag record of another format and a media type whose
    // manifest is gone, and nothing that still counts.
    let tags = berth.data_dir.join("index/tags");
    let live_tags = std::fs::read_dir(&tags).unwrap().count();
    std::fs::write(tags.join("0000.json"), br#"{"digest":"sha256:00"}"#).unwrap();
    let gone = berth.data_dir.join("index/manifests").join("ab".repeat(32));
    std::fs::write(&gone, "application/vnd.oci.image.manifest.v1+json").unwrap();
    let gc = cache(&config, &["gc"]);
    assert!(gc.status.success());
    assert_eq!(
        stdout(&gc).trim(),
        "removed 1 tag records and 1 media-type records whose manifests are gone"
    );
    assert_eq!(std::fs::read_dir(&tags).unwrap().count(), live_tags);
    assert!(!gone.exists());
    // What is cached still serves.
    let r = reqwest::get(format!(
        "{}/v2/library/small/manifests/{}",
        berth.url(),
        images.small.digest
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_removes_a_repository_from_disk_and_from_the_serving_berth() {
    let mut up = TestRegistry::start().await;
    let images = up.images();
    let (small, multi) = (&images.small, &images.multi);
    let mut berth = Berth::hub(&up.url(), "");
    pull_small_and_multi(&berth).await;
    for blob in &small.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
    }
    let base = format!("{}/v2/library", berth.url());
    let small_urls = [
        format!("{base}/small/manifests/latest"),
        format!("{base}/small/manifests/{}", small.digest),
        format!("{base}/small/blobs/{}", small.blobs[0].digest),
    ];
    // Served once more, from memory: the manifest and the config are hot.
    for url in &small_urls {
        assert_eq!(reqwest::get(url).await.unwrap().status(), 200, "{url}");
    }

    let out = cache(&berth.config_path(), &["purge", "docker.io/library/small"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = 1 + small.blobs.len();
    assert!(
        text.starts_with(&format!("purged 1 tags and {files} blobs ("))
            && text.trim_end().ends_with("(by the serving berth)"),
        "{text}"
    );
    assert!(
        small
            .blobs
            .iter()
            .all(|b| !berth_testkit::checks::cached(&berth.data_dir, &b.digest))
    );
    assert!(berth_testkit::checks::cached(
        &berth.data_dir,
        &multi.digest
    ));

    // With upstream gone, nothing of it is served, from disk or memory;
    // the other repository still is.
    up.stop();
    for url in &small_urls {
        let status = reqwest::get(url).await.unwrap().status().as_u16();
        assert!(status >= 500, "{url}: {status}");
    }
    let kept = reqwest::get(format!("{base}/multi/manifests/latest"))
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);

    // With no berth serving, the command does it itself.
    assert!(
        berth
            .terminate(std::time::Duration::from_secs(10))
            .is_some()
    );
    let out = cache(&berth.config_path(), &["purge", "library/*"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("purged 1 tags and ") && !text.contains("serving"),
        "{text}"
    );
    assert!(!berth_testkit::checks::cached(
        &berth.data_dir,
        &multi.digest
    ));
}
