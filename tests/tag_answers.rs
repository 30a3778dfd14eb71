//! One tag answer for every client it fits, against the real upstream:
//! skopeo, podman, containerd and the docker daemon's `Accept` set share
//! one upstream fetch; a client never gets a type it does not accept, nor
//! one platform's manifest of a list it accepts; an outage serves whatever
//! cached answer fits; and a revalidation refreshes or drops every answer.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::checks::eventually_cached;
use berth_testkit::{
    Berth, ChildManifest, Containerd, Skopeo, TestImage, TestRegistry, podman_pull,
    write_hosts_toml,
};

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The `Accept` lines the docker daemon (20.10) sends for a manifest.
const DOCKER_DAEMON: [&str; 6] = [
    DOCKER_V2,
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
];
/// What a modern client (containerd, skopeo) accepts.
const EVERYTHING: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_V2];

/// What a client was served for a manifest.
#[derive(Debug)]
struct Served {
    status: u16,
    content_type: String,
    digest: String,
    warning: Option<String>,
    body: Vec<u8>,
}

async fn get(url: &str, accept: &[&str]) -> Served {
    let mut request = reqwest::Client::new().get(url);
    for line in accept {
        request = request.header("accept", *line);
    }
    let r = request.send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Served {
        status: r.status().as_u16(),
        content_type: header("content-type").unwrap_or_default(),
        digest: header("docker-content-digest").unwrap_or_default(),
        warning: header("warning"),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

fn child<'a>(list: &'a TestImage, platform: &str) -> &'a ChildManifest {
    list.children
        .iter()
        .find(|c| c.platform == platform)
        .unwrap()
}

/// Upstream requests for the manifest of `repo` by tag `tag`, but for
/// the one 401 that teaches berth the upstream's challenge.
fn tag_requests(up: &TestRegistry, repo: &str, tag: &str) -> Vec<String> {
    let path = format!("/v2/{repo}/manifests/{tag}");
    up.requests()
        .into_iter()
        .filter(|r| r.path == path && r.status != 401)
        .map(|r| format!("{} {}", r.method, r.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_client_shares_one_tag_fetch() {
    let up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "");
    let image = "docker.io/library/small:latest";

    let copied = tempfile::tempdir().unwrap();
    Skopeo::new()
        .mirror(&berth.addr)
        .copy_to_dir(image, &copied.path().join("small"))
        .await
        .unwrap();
    assert_eq!(podman_pull(&berth.addr, image).await.unwrap(), small.digest);
    let containerd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "docker.io", &berth.url(), false);
    assert_eq!(
        containerd.ctr_pull(image, hosts.path()).await.unwrap(),
        small.digest
    );
    let docker = get(
        &format!("{}/v2/library/small/manifests/latest", berth.url()),
        &DOCKER_DAEMON,
    )
    .await;
    assert_eq!(
        (docker.status, docker.digest.as_str()),
        (200, small.digest.as_str())
    );

    // Four kinds of client, four Accept sets: one manifest fetch upstream.
    assert_eq!(
        tag_requests(&up, "library/small", "latest"),
        ["GET 200"],
        "{:?}",
        up.requests()
    );
    for blob in &small.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
        assert_eq!(up.count("GET", &blob.digest), 1, "{}", blob.digest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_and_one_platform_of_it_never_cross() {
    let mut up = TestRegistry::start().await;
    let list = &up.images().multi_docker;
    let (amd64, arm64) = (child(list, "linux/amd64"), child(list, "linux/arm64"));
    let berth = Berth::hub(&up.url(), "tag_ttl = \"1h\"");
    let url = format!("{}/v2/{}/manifests/latest", berth.url(), list.repository);

    // A client that accepts no list gets upstream's pick for it: amd64.
    let old = get(&url, &[DOCKER_V2]).await;
    assert_eq!(
        (old.status, old.digest.as_str()),
        (200, amd64.digest.as_str())
    );
    assert_eq!(old.content_type, DOCKER_V2);

    // An arm64 containerd node must get the list, never that amd64
    // manifest, although it accepts its type.
    let containerd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "docker.io", &berth.url(), false);
    let pulled = containerd
        .ctr_pull_platform(
            "docker.io/library/multi-docker:latest",
            hosts.path(),
            "linux/arm64",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nberth log:\n{}", berth.log()));
    assert_eq!(pulled, list.digest);
    for blob in &arm64.blobs {
        assert!(eventually_cached(&berth.data_dir, &blob.digest).await);
    }
    let modern = get(&url, &EVERYTHING).await;
    assert_eq!(modern.digest, list.digest);
    assert_eq!(modern.body, list.manifest);

    // Each keeps its own answer from the cache: no more tag requests.
    assert_eq!(get(&url, &[DOCKER_V2]).await.digest, amd64.digest);
    assert_eq!(
        tag_requests(&up, &list.repository, "latest")
            .iter()
            .filter(|r| r.starts_with("GET "))
            .count(),
        2,
        "{:?}",
        up.requests()
    );

    // Upstream down, past tag_ttl: every client gets the cached answer
    // that fits it, marked stale; a client that accepts neither gets an
    // error.
    up.stop();
    berth.reconfigure("tag_ttl = \"1h\"", "tag_ttl = \"0s\"");
    let stale_list = get(&url, &DOCKER_DAEMON).await;
    assert_eq!(
        (stale_list.status, stale_list.digest.as_str()),
        (200, list.digest.as_str())
    );
    let stale_one = get(&url, &[DOCKER_V2]).await;
    assert_eq!(
        (stale_one.status, stale_one.digest.as_str()),
        (200, amd64.digest.as_str())
    );
    for stale in [&stale_list, &stale_one] {
        assert!(
            stale
                .warning
                .as_deref()
                .is_some_and(|w| w.starts_with("110 ")),
            "{stale:?}"
        );
    }
    let oci_only = get(&url, &[OCI_INDEX, OCI_MANIFEST]).await;
    assert!(oci_only.status >= 500, "{oci_only:?}");
    let body = String::from_utf8_lossy(&oci_only.body);
    assert!(body.contains("\"errors\""), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_serves_a_narrower_client_the_answer_it_accepts() {
    let mut up = TestRegistry::start().await;
    let small = &up.images().small;
    let berth = Berth::hub(&up.url(), "tag_ttl = \"1h\"");
    let copied = tempfile::tempdir().unwrap();
    Skopeo::new()
        .mirror(&berth.addr)
        .copy_to_dir(
            "docker.io/library/small:latest",
            &copied.path().join("small"),
        )
        .await
        .unwrap();
    up.stop();
    berth.reconfigure("tag_ttl = \"1h\"", "tag_ttl = \"0s\"");
    let url = format!("{}/v2/library/small/manifests/latest", berth.url());
    // skopeo's answer is a schema-2 manifest: a client that accepts only
    // that type gets it, marked stale.
    let narrow = get(&url, &[DOCKER_V2]).await;
    assert_eq!(
        (narrow.status, narrow.digest.as_str()),
        (200, small.digest.as_str())
    );
    assert!(
        narrow
            .warning
            .as_deref()
            .is_some_and(|w| w.starts_with("110 ")),
        "{narrow:?}"
    );
    assert_eq!(narrow.body, small.manifest);
    // A client that does not accept that type never gets it.
    let other = get(&url, &[OCI_MANIFEST]).await;
    assert!(other.status >= 500, "{other:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revalidation_refreshes_every_answer_or_drops_them_all() {
    let up = TestRegistry::start().await;
    let list = &up.images().multi_docker;
    let (amd64, arm64) = (child(list, "linux/amd64"), child(list, "linux/arm64"));
    let berth = Berth::hub(&up.url(), "tag_ttl = \"1h\"");
    let url = format!("{}/v2/{}/manifests/latest", berth.url(), list.repository);
    assert_eq!(get(&url, &[DOCKER_V2]).await.digest, amd64.digest);
    assert_eq!(get(&url, &EVERYTHING).await.digest, list.digest);
    let (fresh, past) = ("tag_ttl = \"1h\"", "tag_ttl = \"0s\"");

    // Past tag_ttl, one HEAD confirms the list, and with it the tag: the
    // single-platform answer is current again too.
    berth.reconfigure(fresh, past);
    up.reset_requests();
    assert_eq!(get(&url, &EVERYTHING).await.digest, list.digest);
    berth.reconfigure(past, fresh);
    assert_eq!(get(&url, &[DOCKER_V2]).await.digest, amd64.digest);
    assert_eq!(tag_requests(&up, &list.repository, "latest"), ["HEAD 200"]);

    // The tag moves to the arm64 manifest. Past tag_ttl the HEAD sees it,
    // and no client gets an answer of the old tag.
    up.push_manifest(&list.repository, "latest", DOCKER_V2, &arm64.manifest)
        .await;
    berth.reconfigure(fresh, past);
    up.reset_requests();
    let moved = get(&url, &EVERYTHING).await;
    berth.reconfigure(past, fresh);
    assert_eq!(
        (moved.digest.as_str(), moved.content_type.as_str()),
        (arm64.digest.as_str(), DOCKER_V2)
    );
    assert_eq!(get(&url, &[DOCKER_V2]).await.digest, arm64.digest);
    assert_eq!(
        tag_requests(&up, &list.repository, "latest"),
        ["HEAD 200", "GET 200"]
    );
}
