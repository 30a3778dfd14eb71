//! Far-upstream benchmark: the test upstream made to look like a registry
//! across an ocean by its tap (every request waits one round trip of 50 ms,
//! every response is capped at 8 MiB/s on its connection), and an image of
//! 10 layers of 4 MiB. Each client pulls cold through a fresh berth and
//! directly through the same far link, in one run; the figures are ratios.
//! Upstream requests are counted at the tap and the token issuer.
//!
//! Run with `bench/run far` (a release build).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::bench_image::{self, BenchImage};
use berth_testkit::report::{Table, median, ratio, secs};
use berth_testkit::{
    Berth, Containerd, Skopeo, TestRegistry, podman_pull, upstream_toml, write_hosts_toml,
};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

const ROUND_TRIP: Duration = Duration::from_millis(50);
const RATE: u64 = 8 << 20;
const LAYERS: u32 = 10;
const LAYER_MIB: u32 = 4;
const ROUNDS: usize = 3;
/// Blobs a docker daemon downloads at once (`max-concurrent-downloads`).
const DOCKER_DOWNLOADS: usize = 3;
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Where skopeo copies to: a `dir:` (one blob at a time) or an OCI layout
/// (several at once).
#[derive(Clone, Copy)]
enum Dest {
    Dir,
    Oci,
}

/// `skopeo copy` of `image` (a name like "docker.io/library/far:latest")
/// from `registry`: directly, or through it as a mirror. Seconds taken.
async fn skopeo(registry: &str, image: &str, mirror: bool, into: Dest) -> f64 {
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("image");
    let start = Instant::now();
    let (skopeo, source) = if mirror {
        (Skopeo::new().mirror(registry), image.to_owned())
    } else {
        let name = image.trim_start_matches("docker.io/");
        (Skopeo::new(), format!("{registry}/{name}"))
    };
    let result = match into {
        Dest::Dir => skopeo.copy_to_dir(&source, &dest).await,
        Dest::Oci => skopeo.copy_to_oci(&source, &dest).await,
    };
    result.unwrap_or_else(|e| panic!("skopeo pull of {image} from {registry}: {e}"));
    start.elapsed().as_secs_f64()
}

/// A client that reads the manifest, then downloads its blobs
/// `DOCKER_DOWNLOADS` at a time, as the docker daemon does. Seconds taken.
async fn three_at_a_time(base: &str, image: &BenchImage, token: Option<&str>) -> f64 {
    let client = reqwest::Client::new();
    let get = |path: String| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request
    };
    let start = Instant::now();
    let manifest = get(image.manifest_path())
        .header("accept", DOCKER_V2)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(manifest.bytes().await.unwrap(), image.manifest);
    futures_util::stream::iter(image.blobs())
        .map(|(digest, size)| {
            let request = get(image.blob_path(digest));
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200, "{digest}");
                let body = response.bytes().await.unwrap();
                assert_eq!(body.len() as u64, *size, "{digest}");
            }
        })
        .buffer_unordered(DOCKER_DOWNLOADS)
        .collect::<Vec<()>>()
        .await;
    start.elapsed().as_secs_f64()
}

/// What a cold pull of `image` through `berth` cost upstream, as
/// "N token, N 401, N manifest GET, N GETs per blob (most)".
async fn cold_pull_requests(up: &TestRegistry, hub: &str, image: &BenchImage) -> String {
    let berth = Berth::start(hub);
    // Another repository first: berth learns the upstream's challenge.
    skopeo(
        &berth.addr,
        "docker.io/library/small:latest",
        true,
        Dest::Dir,
    )
    .await;
    up.reset_requests();
    up.issuer().reset_log();
    let name = format!("docker.io/{}", image.reference());
    skopeo(&berth.addr, &name, true, Dest::Oci).await;
    let requests = up.requests();
    let refused = requests.iter().filter(|r| r.status == 401).count();
    let manifests = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/manifests/"))
        .count();
    let per_blob = image
        .blobs()
        .map(|(digest, _)| {
            requests
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with(digest.as_str()))
                .count()
        })
        .max()
        .unwrap_or_default();
    format!(
        "{} token, {refused} 401, {manifests} manifest GET, {per_blob} GET per blob",
        up.issuer().token_log().len()
    )
}

/// Upstream manifest requests when skopeo, podman, containerd and the
/// docker daemon's Accept set pull one tag through one berth.
async fn mixed_clients(up: &TestRegistry, hub: &str) -> usize {
    let berth = Berth::start(hub);
    up.reset_requests();
    let image = "docker.io/library/small:latest";
    skopeo(&berth.addr, image, true, Dest::Dir).await;
    podman_pull(&berth.addr, image).await.unwrap();
    let containerd = Containerd::start().await;
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), "docker.io", &berth.url(), false);
    containerd.ctr_pull(image, hosts.path()).await.unwrap();
    let docker_accept = [
        DOCKER_V2,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
    ];
    let mut request =
        reqwest::Client::new().get(format!("{}/v2/library/small/manifests/latest", berth.url()));
    for line in docker_accept {
        request = request.header("accept", line);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    up.requests()
        .iter()
        .filter(|r| r.path == "/v2/library/small/manifests/latest" && r.status != 401)
        .count()
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let up = TestRegistry::start().await;
    let image = bench_image::push(&up, "library/far", LAYER_MIB, LAYERS).await;
    up.set_delay(Some(ROUND_TRIP));
    up.set_rate(Some(RATE));
    let hub = upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true",
    );
    let name = format!("docker.io/{}", image.reference());
    // The same berth without prefetching: what `eager_layers` buys.
    let lazy = upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true\neager_layers = false",
    );

    let (mut oci_lazy, mut dl_lazy) = (Vec::new(), Vec::new());
    let (mut oci_direct, mut oci_berth, mut dir_direct, mut dir_berth) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut dl_direct, mut dl_berth) = (Vec::new(), Vec::new());
    let scope = format!("repository:{}:pull", image.repository);
    let token = up.issuer().mint(&[&scope], None);
    for _ in 0..ROUNDS {
        let host = up.host();
        let direct = |into| skopeo(&host, &name, false, into);
        oci_direct.push(direct(Dest::Oci).await);
        oci_berth.push(skopeo(&Berth::start(&hub).addr, &name, true, Dest::Oci).await);
        oci_lazy.push(skopeo(&Berth::start(&lazy).addr, &name, true, Dest::Oci).await);
        dir_direct.push(direct(Dest::Dir).await);
        dir_berth.push(skopeo(&Berth::start(&hub).addr, &name, true, Dest::Dir).await);
        dl_direct.push(three_at_a_time(&up.url(), &image, Some(&token)).await);
        dl_berth.push(three_at_a_time(&Berth::start(&hub).url(), &image, None).await);
        dl_lazy.push(three_at_a_time(&Berth::start(&lazy).url(), &image, None).await);
    }
    let requests = cold_pull_requests(&up, &hub, &image).await;
    let mixed = mixed_clients(&up, &hub).await;

    let mut t = Table::new();
    let (od, ob) = (median(oci_direct), median(oci_berth.clone()));
    t.row(
        "cold pull, skopeo into an OCI layout (several blobs at once): berth / direct",
        secs(ob),
        secs(od),
        ratio(ob, od),
        "<= 0.7",
    );
    let ol = median(oci_lazy);
    t.row(
        "  the same, berth with eager_layers = false / direct",
        secs(ol),
        secs(od),
        ratio(ol, od),
        "—",
    );
    let (sd, sb) = (median(dir_direct), median(dir_berth));
    t.row(
        "cold pull, skopeo into a dir (one blob at a time): berth / direct",
        secs(sb),
        secs(sd),
        ratio(sb, sd),
        "—",
    );
    let (dd, db) = (median(dl_direct), median(dl_berth.clone()));
    t.row(
        "cold pull, 3 blobs at a time (as docker): berth / direct",
        secs(db),
        secs(dd),
        ratio(db, dd),
        "<= 0.5",
    );
    let dl = median(dl_lazy);
    t.row(
        "  the same, berth with eager_layers = false / direct",
        secs(dl),
        secs(dd),
        ratio(dl, dd),
        "—",
    );
    t.row(
        "upstream requests for a cold pull of a new repository (skopeo)",
        requests,
        "—".to_owned(),
        "—".to_owned(),
        "1 token, 0 401, 1 manifest GET, 1 GET per blob",
    );
    t.row(
        "upstream manifest requests: skopeo, podman, containerd, docker pull one tag",
        mixed.to_string(),
        "—".to_owned(),
        "—".to_owned(),
        "1",
    );
    t.note(format!(
        "far link: the tap in front of the upstream waits {ROUND_TRIP:?} before each request \
         and caps each response at {} MiB/s; the token service is near. Image: {LAYERS} \
         layers of {LAYER_MIB} MiB. Median of {ROUNDS}, a fresh berth each time; berth \
         skopeo (OCI layout) runs: {}; berth 3-at-a-time runs: {}. The direct 3-at-a-time client is \
         handed its token; skopeo fetches its own.",
        RATE >> 20,
        show(&oci_berth),
        show(&dl_berth),
    ));
    t.note(format!(
        "whole run: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    t.print("berth in front of a far upstream (127.0.0.1, delayed and rate-capped)");
}

fn show(runs: &[f64]) -> String {
    runs.iter()
        .map(|s| format!("{s:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}
