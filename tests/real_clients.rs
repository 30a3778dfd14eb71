//! podman and containerd pull through berth exactly as operators configure
//! them: a `registries.conf` mirror (plain and with a namespace path) and a
//! containerd `hosts.toml` mirror that sends `?ns=docker.io`.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::eventually_cached;
use berth_testkit::{
    Berth, Containerd, TestRegistry, podman_pull, upstream_toml, write_hosts_toml,
};

#[tokio::test(flavor = "multi_thread")]
async fn podman_pulls_docker_hub_images_through_a_mirror() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::start(&upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true",
    ));
    let digest = podman_pull(&berth.addr, "docker.io/library/small:latest")
        .await
        .unwrap();
    assert_eq!(digest, small.digest);
    for blob in &small.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
    }
    assert!(
        berth
            .log()
            .contains("path=/v2/library/small/manifests/latest")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_reaches_other_registries_through_a_namespace_path() {
    let up = TestRegistry::start().await;
    let multi = &up.images().multi;
    // "ghcr.io" is served by the test upstream; the default upstream is a
    // closed port, so only path-prefix routing can make this pull work.
    let config = format!(
        "{}{}",
        upstream_toml(
            "docker.io",
            "http://127.0.0.1:9",
            "default = true\nauto_library = true"
        ),
        upstream_toml("ghcr.io", &up.url(), "")
    );
    let berth = Berth::start(&config);
    let location = format!("{}/ghcr.io", berth.addr);
    let digest = podman_pull(&location, "ghcr.io/library/multi:latest")
        .await
        .unwrap();
    assert_eq!(digest, multi.digest);
    assert!(
        berth
            .log()
            .contains("path=/v2/ghcr.io/library/multi/manifests/latest"),
        "{}",
        berth.log()
    );
    // Upstream saw the name without the prefix.
    assert!(up.count("GET", "/v2/library/multi/manifests/latest") >= 1);
    assert_eq!(up.count_path("/v2/ghcr.io/"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_pulls_through_hosts_toml_with_ns() {
    let up = TestRegistry::start().await;
    let multi = &up.images().multi;
    // No default upstream: a request that did not carry ?ns=docker.io
    // could not be routed, so a successful pull proves containerd sent it.
    let berth = Berth::start(&upstream_toml(
        "docker.io",
        &up.url(),
        "auto_library = true",
    ));
    let containerd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "docker.io", &berth.url(), false);
    let digest = containerd
        .ctr_pull("docker.io/library/multi:latest", hosts.path())
        .await
        .unwrap_or_else(|e| panic!("{e}\nberth log:\n{}", berth.log()));
    assert_eq!(digest, multi.digest);
    let log = berth.log();
    assert!(
        log.contains("method=HEAD path=/v2/library/multi/manifests/latest"),
        "{log}"
    );
    let amd64 = multi
        .children
        .iter()
        .find(|c| c.platform == "linux/amd64")
        .unwrap();
    for blob in &amd64.blobs {
        assert!(
            eventually_cached(&berth.data_dir, &blob.digest).await,
            "{}",
            blob.digest
        );
        assert_eq!(up.count("GET", &blob.digest), 1);
    }
    // The upstream never sees containerd's ns parameter.
    assert!(up.requests().iter().all(|r| r.query.is_none()));
    // Without a default upstream, the same path without ns is refused.
    let response = reqwest::get(format!("{}/v2/library/multi/manifests/latest", berth.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// The `_default` form of docs/clients.md: one `hosts.toml` for every
/// registry without one of its own.
#[tokio::test(flavor = "multi_thread")]
async fn containerd_takes_the_mirror_from_the_default_hosts_toml() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    // Two upstreams, neither the default: only ?ns= routes a request.
    let berth = Berth::start(&format!(
        "{}{}",
        upstream_toml("docker.io", &up.url(), "auto_library = true"),
        upstream_toml("quay.io", &up.url(), "")
    ));
    let containerd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "_default", &berth.url(), false);
    assert!(!hosts.path().join("docker.io").exists());
    for (image, ns) in [
        ("docker.io/library/small:latest", "docker.io"),
        ("quay.io/library/small:latest", "quay.io"),
    ] {
        let digest = containerd
            .ctr_pull(image, hosts.path())
            .await
            .unwrap_or_else(|e| panic!("{image}: {e}\nberth log:\n{}", berth.log()));
        assert_eq!(digest, small.digest);
        assert!(
            berth
                .log()
                .contains(&format!("upstream=\"{ns}\" repo=\"library/small\"")),
            "{}",
            berth.log()
        );
    }
}
