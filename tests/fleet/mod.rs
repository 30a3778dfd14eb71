//! What the cluster tests share: replicas of berth on known ports, joined
//! through one Redis, in front of the real token-auth registry, with their
//! blobs in one bucket (`s3 + cluster`) or each on its own disk
//! (`fs + cluster`).
#![allow(dead_code)]

use berth_testkit::checks::{assert_dir_holds, sha256, until};
use berth_testkit::proc::free_port;
use berth_testkit::{
    Berth, Blob, RedisServer, S3Server, TestImage, TestRegistry, skopeo_copy_to_dir, upstream_toml,
};
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Replicas joined through one Redis.
pub(crate) struct Fleet {
    pub(crate) replicas: Vec<Berth>,
    pub(crate) redis: RedisServer,
    secret: tempfile::NamedTempFile,
    /// Each replica's config body, to start it again.
    bodies: Vec<String>,
}

impl Fleet {
    /// `n` replicas in front of `up`; their blobs in `s3` when given,
    /// else each on its own disk. `extra` goes into every config.
    pub(crate) fn start(up: &TestRegistry, s3: Option<&S3Server>, n: usize, extra: &str) -> Fleet {
        let redis = RedisServer::start();
        let mut secret = tempfile::NamedTempFile::new().unwrap();
        secret.write_all(b"a-cluster-secret-for-tests\n").unwrap();
        let mut fleet = Fleet {
            replicas: Vec::new(),
            redis,
            secret,
            bodies: Vec::new(),
        };
        for _ in 0..n {
            let port = free_port();
            let body = format!(
                "listen = \"127.0.0.1:{port}\"\n{}{}\n[cluster]\nredis_url = \"{}\"\nsecret_file = {:?}\nlease = \"2s\"\n{extra}",
                upstream_toml(
                    "docker.io",
                    &up.url(),
                    "default = true\nauto_library = true"
                ),
                s3.map(S3Server::storage_toml).unwrap_or_default(),
                fleet.redis.url(),
                fleet.secret.path(),
            );
            fleet.replicas.push(Berth::start(&body));
            fleet.bodies.push(body);
        }
        fleet
    }

    /// `clients` concurrent verified GETs of the `library/big` layer
    /// `blob`, spread over the replicas in turn, while upstream sends
    /// slowly enough that they overlap.
    pub(crate) async fn cold_clients(&self, up: &TestRegistry, blob: &Blob, clients: usize) {
        up.set_throttle(Some(Duration::from_micros(200)));
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let url = format!(
                    "{}/v2/library/big/blobs/{}",
                    self.url(i % self.replicas.len()),
                    blob.digest
                );
                tokio::spawn(get_verified(url, blob.digest.clone()))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        up.set_throttle(None);
    }

    /// Pull `library/<name>:latest` with skopeo through each of the first
    /// `n` replicas in turn, into `dest/<label><i>`, checking it arrived
    /// whole as `image`.
    pub(crate) async fn pull_through_each(
        &self,
        name: &str,
        image: &TestImage,
        dest: &std::path::Path,
        label: &str,
        n: usize,
    ) {
        for i in 0..n {
            let to = dest.join(format!("{label}{i}"));
            skopeo_copy_to_dir(
                &format!("{}/library/{name}:latest", self.replicas[i].addr),
                &to,
            )
            .await
            .unwrap();
            assert_dir_holds(&to, image);
        }
    }

    /// The URL of replica `i`.
    pub(crate) fn url(&self, i: usize) -> String {
        self.replicas[i].url()
    }
}

/// The value of the metric line starting with `name` (labels included)
/// in `berth`'s metrics; 0 when absent.
pub(crate) async fn metric(berth: &Berth, name: &str) -> u64 {
    let metrics = berth.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// Wait (at most 20 s) until `berth`'s metric `name` is `value`.
pub(crate) async fn until_metric(berth: &Berth, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = metric(berth, name).await;
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {now}, not {value}\n{}",
            berth.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait (at most 20 s) until upstream received a GET of `digest`.
pub(crate) async fn until_upstream_asked(up: &TestRegistry, digest: &str) {
    until(
        Duration::from_secs(20),
        || up.count("GET", digest) > 0,
        || format!("{:#?}", up.requests()),
    )
    .await;
}

/// GET `url`, check the body hashes to `digest`.
pub(crate) async fn get_verified(url: String, digest: String) {
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest, "{url}");
}
