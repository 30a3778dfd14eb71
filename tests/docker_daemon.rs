//! The docker daemon as a client, the one the seed systems were built
//! for: a real dockerd (started by the test, stopped by its pid) pulls
//! through berth with its mirror set by `--registry-mirror` and by
//! daemon.json, a `library/` image by short name, a namespaced one and a
//! multi-arch one; and, with logins required, `docker login` to berth and
//! a pull from it.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::dockerd::{DockerDaemon, MirrorFrom};
use berth_testkit::{Berth, Upstream};

/// The repository digests docker records for `image`.
fn repo_digests(daemon: &DockerDaemon, image: &str) -> String {
    let out = daemon.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        image,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pull(daemon: &DockerDaemon, image: &str) {
    let out = daemon.docker(&["pull", "--quiet", image]);
    assert!(
        out.status.success(),
        "docker pull {image}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
}

#[test]
fn docker_pulls_through_berth_with_the_mirror_from_the_flag_and_from_daemon_json() {
    let up = Upstream::start_blocking();
    // With the upstream's credentials, so a namespaced private image can
    // be pulled too.
    let creds = format!(
        "username = \"puller\"\npassword = \"pullpass\"\nrealm_hosts = [\"{}\"]\n",
        up.issuer().addr()
    );
    let berth = Berth::hub(&up.url(), &creds);
    let images = up.images();
    let url = berth.url();
    for (round, mirror) in [MirrorFrom::Flag(&url), MirrorFrom::DaemonJson(&url)]
        .into_iter()
        .enumerate()
    {
        let daemon = DockerDaemon::start(mirror);
        up.reset_requests();
        let seen = berth.log().len();
        pull(&daemon, "small");
        pull(&daemon, "private/secret:latest");
        pull(&daemon, "multi");
        for (image, digest) in [
            ("small", &images.small.digest),
            ("private/secret", &images.private_secret.digest),
            ("multi", &images.multi.digest),
        ] {
            let digests = repo_digests(&daemon, image);
            assert!(
                digests.contains(digest.as_str()),
                "{mirror:?} {image}: {digests}"
            );
        }
        // This daemon asked berth (the real Docker Hub is out of reach
        // here, so nothing fell back to it); the first round's pulls went
        // on to the upstream, the second's were served from the cache.
        let log = berth.log()[seen..].to_owned();
        for repo in ["library/small", "private/secret", "library/multi"] {
            assert!(
                log.contains(&format!("repo=\"{repo}\"")),
                "{mirror:?}: no request for {repo} reached berth:\n{log}"
            );
        }
        let upstream_manifests = up.count("GET", "/v2/private/secret/manifests/");
        if round == 0 {
            assert!(upstream_manifests >= 1, "{:?}", up.requests());
        } else {
            assert_eq!(upstream_manifests, 0, "{:?}", up.requests());
        }
    }
}

#[test]
fn docker_login_to_berth_then_pull_from_it() {
    let up = Upstream::start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret-pass", 5).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let berth = Berth::hub(
        &up.url(),
        &format!(
            "[auth]\nhtpasswd_file = {:?}\nanonymous = \"none\"\n",
            htpasswd.display().to_string()
        ),
    );
    let daemon = DockerDaemon::start(MirrorFrom::Flag("http://127.0.0.1:9"));
    let image = format!("{}/small:latest", berth.addr);
    let refused = daemon.docker(&["pull", "--quiet", &image]);
    assert!(!refused.status.success(), "pulled without a login");
    let wrong = daemon.docker_with_input(
        &["login", &berth.addr, "-u", "alice", "--password-stdin"],
        Some("wrong"),
    );
    assert!(!wrong.status.success(), "a wrong password logged in");
    let login = daemon.docker_with_input(
        &["login", &berth.addr, "-u", "alice", "--password-stdin"],
        Some("s3cret-pass"),
    );
    assert!(
        login.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&login.stderr),
        berth.log()
    );
    pull(&daemon, &image);
    let digests = repo_digests(&daemon, &image);
    assert!(
        digests.contains(up.images().small.digest.as_str()),
        "{digests}"
    );
}
