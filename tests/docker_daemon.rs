//! The docker daemon as a client, the one the seed systems were built
//! for: a real dockerd (started by the test, stopped by its pid) pulls
//! through berth with its mirror set by `--registry-mirror` and by
//! daemon.json, a `library/` image by short name, a namespaced one and a
//! multi-arch one; and, with logins required, `docker login` to berth and
//! a pull from it.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::dockerd::{DockerDaemon, MirrorFrom};
use berth_testkit::{Berth, TestRegistry};

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

/// `docker login ADDR -u USER --password-stdin`.
fn login(daemon: &DockerDaemon, addr: &str, user: &str, password: &str) -> std::process::Output {
    daemon.docker_with_input(
        &["login", addr, "-u", user, "--password-stdin"],
        Some(password),
    )
}

/// Pull `image` and check docker recorded `digest` for it.
fn pull_as(daemon: &DockerDaemon, image: &str, digest: &str) {
    pull(daemon, image);
    let digests = repo_digests(daemon, image);
    assert!(digests.contains(digest), "{image}: {digests}");
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
    let up = TestRegistry::start_blocking();
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
    let up = TestRegistry::start_blocking();
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
    let wrong = login(&daemon, &berth.addr, "alice", "wrong");
    assert!(!wrong.status.success(), "a wrong password logged in");
    let login = login(&daemon, &berth.addr, "alice", "s3cret-pass");
    assert!(
        login.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&login.stderr),
        berth.log()
    );
    pull_as(&daemon, &image, &up.images().small.digest);
}

#[test]
fn the_image_builds_from_scratch_and_serves_a_pull() {
    let up = TestRegistry::start_blocking();
    let daemon = DockerDaemon::start(MirrorFrom::Flag("http://127.0.0.1:9"));
    // The script users run, against this daemon, with a dev build.
    let root = env!("CARGO_MANIFEST_DIR");
    let built = std::process::Command::new(format!("{root}/packaging/build-image"))
        .arg("berth:test")
        .env("DOCKER", "/usr/bin/docker")
        .env("DOCKER_HOST", daemon.host())
        .env("BERTH_PROFILE", "dev")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-image: {}\n{}",
        String::from_utf8_lossy(&built.stderr),
        daemon.log()
    );
    let port = berth_testkit::proc::free_port();
    let config = daemon.dir().join("berth.toml");
    let upstream = berth_testkit::upstream_toml(
        "docker.io",
        &up.url(),
        "default = true\nauto_library = true\n",
    );
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\nbuiltin_upstreams = false\n{upstream}"),
    )
    .unwrap();
    let mount = format!("{}:/etc/berth/berth.toml:ro", config.display());
    let run = daemon.docker(&[
        "run",
        "-d",
        "--name",
        "berth-test",
        "--network",
        "host",
        "-v",
        &mount,
        "berth:test",
        "serve",
        "--config",
        "/etc/berth/berth.toml",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let url = format!("http://127.0.0.1:{port}");
    let ready = berth_testkit::proc::wait_until(std::time::Duration::from_secs(30), || {
        std::process::Command::new("curl")
            .args(["-sf", &format!("{url}/health")])
            .status()
            .is_ok_and(|s| s.success())
    });
    let logs =
        || String::from_utf8_lossy(&daemon.docker(&["logs", "berth-test"]).stderr).into_owned();
    assert!(ready, "berth in the container did not answer:\n{}", logs());

    // A pull through the container.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = tempfile::tempdir().unwrap();
    rt.block_on(
        berth_testkit::Skopeo::new()
            .mirror(&format!("127.0.0.1:{port}"))
            .copy_to_dir("docker.io/library/small:latest", dest.path()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let manifest = std::fs::read(dest.path().join("manifest.json")).unwrap();
    assert_eq!(manifest, up.images().small.manifest);
    assert!(up.count("GET", "/v2/library/small/manifests/latest") >= 1);

    // It stops cleanly on SIGTERM.
    let stop = daemon.docker(&["stop", "-t", "20", "berth-test"]);
    assert!(stop.status.success());
    let code = daemon.docker(&["inspect", "-f", "{{.State.ExitCode}}", "berth-test"]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "{}",
        logs()
    );
    assert!(logs().contains("drained; bye"), "{}", logs());
    let removed = daemon.docker(&["rm", "berth-test"]);
    assert!(removed.status.success());
}

#[test]
fn docker_login_with_upstream_credentials_through_a_pass_through_berth() {
    let up = TestRegistry::start_blocking();
    let extra = format!(
        "auth_mode = \"passthrough\"\nrealm_hosts = [\"{}\"]\n",
        up.issuer().addr()
    );
    let berth = Berth::hub(&up.url(), &extra);
    let daemon = DockerDaemon::start(MirrorFrom::Flag("http://127.0.0.1:9"));
    let image = format!("{}/private/secret:latest", berth.addr);
    let refused = daemon.docker(&["pull", "--quiet", &image]);
    assert!(
        !refused.status.success(),
        "pulled a private image without a login"
    );
    let wrong = login(&daemon, &berth.addr, "puller", "wrong");
    assert!(
        !wrong.status.success(),
        "a wrong upstream password logged in"
    );
    up.issuer().reset_log();
    let login = login(&daemon, &berth.addr, "puller", "pullpass");
    assert!(
        login.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&login.stderr),
        berth.log()
    );
    pull_as(&daemon, &image, &up.images().private_secret.digest);
    // The upstream's token server saw the client's own account.
    assert!(
        up.issuer()
            .token_log()
            .iter()
            .any(|t| t.username.as_deref() == Some("puller") && t.status == 200),
        "{:?}",
        up.issuer().token_log()
    );
}
