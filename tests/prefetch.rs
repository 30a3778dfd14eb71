//! `berth prefetch` warms a running berth from the real upstream as a
//! client would: one upstream fetch per blob, a line per layer and a
//! summary without a terminal, progress bars under a pseudo-terminal, a
//! non-zero exit when an image fails; and `[cache] prefetch_file`, warmed
//! by the server itself.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::eventually_cached;
use berth_testkit::{Berth, TestRegistry};
use std::process::Output;

async fn prefetch(berth: &Berth, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["prefetch", "--server", &berth.url()]).args(args);
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetch_warms_images_once_and_reports_each_layer() {
    let up = TestRegistry::start().await;
    let images = up.images();
    let berth = Berth::hub(&up.url(), "eager_layers = false");
    let out = prefetch(
        &berth,
        &[
            "small",
            "docker.io/library/multi",
            "--platform",
            "linux/arm64",
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arm64 = images
        .multi
        .children
        .iter()
        .find(|c| c.platform == "linux/arm64")
        .unwrap();
    for blob in images.small.blobs.iter().chain(&arm64.blobs) {
        // The last byte reaches the client once verified, a moment
        // before the commit.
        assert!(
            eventually_cached(&berth.data_dir, &blob.digest).await,
            "{}",
            blob.digest
        );
        assert_eq!(up.count("GET", &blob.digest), 1);
        let short: String = blob.digest.chars().take(19).collect();
        assert!(
            text.lines()
                .any(|l| l.contains(&short) && l.ends_with(" s") && l.contains("fetched")),
            "{short}: {text}"
        );
    }
    // Only the platform asked for.
    let amd64 = images
        .multi
        .children
        .iter()
        .find(|c| c.platform == "linux/amd64")
        .unwrap();
    assert_eq!(up.count_path(&amd64.digest), 0);
    assert!(text.contains("prefetched 2 of 2 images"), "{text}");
    assert!(text.contains(", 0 failed"), "{text}");
    assert!(
        !text.contains("blobs done"),
        "bars without a terminal: {text}"
    );

    // Again: everything is already cached, nothing goes upstream.
    up.reset_requests();
    let again = prefetch(&berth, &["small"]).await;
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(text.contains("0 B fetched from upstream"), "{text}");
    assert_eq!(
        text.matches("already cached in").count(),
        images.small.blobs.len(),
        "{text}"
    );
    assert_eq!(up.count_path("/blobs/"), 0);

    // An image upstream does not have fails the run, and is named.
    let failed = prefetch(&berth, &["small", "library/nothing:here"]).await;
    let text = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(text.contains("1 failed (library/nothing:here)"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetch_draws_progress_bars_on_a_terminal() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    // `script` runs the command under a pseudo-terminal and copies what it
    // drew.
    let command = format!(
        "{} prefetch --server {} big",
        env!("CARGO_BIN_EXE_berth"),
        berth.url()
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .await
        .unwrap();
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{drawn}");
    // The image's bar, then a bar per layer with its rate.
    assert!(drawn.contains("2/2 blobs done"), "{drawn}");
    assert!(
        drawn.contains("/48.01 MiB") && drawn.contains("MiB/s"),
        "{drawn}"
    );
    assert!(drawn.contains('\u{1b}'), "no terminal drawing: {drawn}");
    assert!(drawn.contains("prefetched 1 of 1 images"), "{drawn}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetch_file_is_warmed_by_the_server_at_start() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("prefetch.txt");
    std::fs::write(&list, "# warmed at start\nsmall\n\nNot/A/Name\n").unwrap();
    let berth = Berth::hub(
        &up.url(),
        &format!(
            "eager_layers = false\n[cache]\nprefetch_file = {:?}\nprefetch_interval = \"1h\"",
            list.display().to_string()
        ),
    );
    for blob in &small.blobs {
        assert!(
            eventually_cached(&berth.data_dir, &blob.digest).await,
            "{}",
            berth.log()
        );
        assert_eq!(up.count("GET", &blob.digest), 1);
    }
    let mut log = String::new();
    for _ in 0..100 {
        log = berth.log();
        if log.contains("prefetched 1 of 2 images") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(log.contains("1 failed (Not/A/Name)"), "{log}");
}
