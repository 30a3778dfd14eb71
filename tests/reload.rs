//! Live reload of the configuration file, against the real upstream: a
//! changed file takes effect for new requests while a download in flight
//! finishes whole; a bad file is refused and the old settings stay;
//! settings that need a restart say so; a file change that would loosen
//! access (as a half-written file does) waits for SIGHUP; the htpasswd
//! file is watched; SIGHUP reloads too; and each key the docs say
//! reloads (an upstream's `url`, `domain`, `url302`, `[limits]` rates)
//! applies to the next request. `tag_ttl` and `list_ttl` are reloaded by
//! the tests that move past them (`tag_answers`, `listings`).
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::fake_upstream::FakeUpstream;
use berth_testkit::{Berth, TestRegistry, upstream_toml};
use std::time::{Duration, Instant};

/// Poll `check` for up to 10 s.
async fn eventually(what: &str, berth: &Berth, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}:\n{}", berth.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_file_applies_to_new_requests_and_spares_those_in_flight() {
    let up = TestRegistry::start().await;
    let rule = "[[access.rules]]\nname = \"no-small\"\naction = \"deny\"\nrepository = \"^library/small$\"\n";
    let berth = Berth::hub(&up.url(), "");
    let path = berth.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let ruled = format!("{original}{rule}");
    let client = reqwest::Client::new();
    let small = format!("{}/v2/library/small/manifests/latest", berth.url());
    assert_eq!(client.get(&small).send().await.unwrap().status(), 200);

    // A slow download of the big blob is under way during the reload.
    let big = up.images().big.largest_blob().clone();
    up.set_rate(Some(8 << 20));
    let url = format!("{}/v2/library/big/blobs/{}", berth.url(), big.digest);
    let answer = reqwest::get(url).await.unwrap();
    assert_eq!(answer.status(), 200);
    // Its headers are in: the body (6 s at this rate) is still coming.
    let download = tokio::spawn(async move { answer.bytes().await.unwrap() });
    assert!(!download.is_finished(), "the download should still run");

    // A rule arrives: new requests meet it.
    std::fs::write(&path, &ruled).unwrap();
    eventually("the rule does not apply", &berth, async || {
        client.get(&small).send().await.unwrap().status() == 403
    })
    .await;
    assert!(berth.log().contains("configuration reloaded"));
    let bytes = download.await.unwrap();
    up.set_rate(None);
    assert_eq!(
        berth_testkit::checks::sha256(&bytes),
        big.digest,
        "the download in flight did not finish whole"
    );

    // A bad file is refused, and the running settings stay.
    std::fs::write(&path, format!("{ruled}\ncolour = \"blue\"\n")).unwrap();
    eventually("the bad file was not reported", &berth, async || {
        berth.log().contains("configuration not reloaded")
    })
    .await;
    assert!(
        berth.log().contains("colour: unknown key"),
        "{}",
        berth.log()
    );
    assert_eq!(client.get(&small).send().await.unwrap().status(), 403);

    // What needs a restart says so, and the rest applies.
    // url302 is a top-level key: it goes before the tables.
    let moved = format!(
        "url302 = \"https://example.org/\"\n{}",
        ruled.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"")
    );
    std::fs::write(&path, &moved).unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    eventually("url302 was not applied", &berth, async || {
        no_redirects
            .get(format!("{}/", berth.url()))
            .send()
            .await
            .unwrap()
            .status()
            == 302
    })
    .await;
    assert!(
        berth
            .log()
            .contains("listen changed in the file: it takes effect only after a restart"),
        "{}",
        berth.log()
    );

    // Removing the rule loosens access: the watcher leaves it to SIGHUP.
    std::fs::write(&path, moved.replace(rule, "")).unwrap();
    eventually("the loosening file was not reported", &berth, async || {
        berth
            .log()
            .contains("it would loosen access (access rules are removed or changed)")
    })
    .await;
    assert_eq!(client.get(&small).send().await.unwrap().status(), 403);
    berth.hangup();
    eventually("SIGHUP did not apply the file", &berth, async || {
        client.get(&small).send().await.unwrap().status() == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_written_file_never_opens_the_mirror() {
    let up = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
    let auth = format!(
        "[auth]\nhtpasswd_file = {:?}\nanonymous = \"none\"\n",
        file.display().to_string()
    );
    let berth = Berth::hub(&up.url(), &auth);
    let path = berth.config_path();
    let whole = std::fs::read_to_string(&path).unwrap();
    let client = reqwest::Client::new();
    let small = format!("{}/v2/library/small/manifests/latest", berth.url());
    assert_eq!(client.get(&small).send().await.unwrap().status(), 401);
    // The file as a writer leaves it halfway: its valid start, no [auth].
    std::fs::write(&path, &whole[..whole.find("[auth]").unwrap()]).unwrap();
    eventually(
        "the half-written file was not reported",
        &berth,
        async || berth.log().contains("it would loosen access"),
    )
    .await;
    assert!(
        berth.log().contains("[auth] htpasswd_file is gone"),
        "{}",
        berth.log()
    );
    assert_eq!(client.get(&small).send().await.unwrap().status(), 401);
    // The rest arrives: reloaded as whole, and still closed.
    std::fs::write(&path, &whole).unwrap();
    eventually("the whole file was not reloaded", &berth, async || {
        berth.log().contains("configuration reloaded")
    })
    .await;
    assert_eq!(client.get(&small).send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_htpasswd_file_applies_at_once() {
    let up = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let entry =
        |user: &str, password: &str| format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap());
    std::fs::write(
        &file,
        entry("alice", "old password") + &entry("bob", "bobs"),
    )
    .unwrap();
    let berth = Berth::hub(
        &up.url(),
        &format!(
            "[auth]\nhtpasswd_file = {:?}\nanonymous = \"none\"\n",
            file.display().to_string()
        ),
    );
    let client = reqwest::Client::new();
    let small = format!("{}/v2/library/small/manifests/latest", berth.url());
    let pull = |user: &'static str, password: &'static str| {
        let request = client.get(&small).basic_auth(user, Some(password));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Both logins are checked, and remembered.
    assert_eq!(pull("alice", "old password").await, 200);
    assert_eq!(pull("bob", "bobs").await, 200);
    // alice's password changes, bob is removed.
    std::fs::write(&file, entry("alice", "new password")).unwrap();
    eventually("the htpasswd change was not applied", &berth, async || {
        berth.log().contains("logins reloaded")
    })
    .await;
    assert_eq!(pull("alice", "old password").await, 401);
    assert_eq!(pull("bob", "bobs").await, 401);
    assert_eq!(pull("alice", "new password").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_file() {
    let up = TestRegistry::start().await;
    let berth = Berth::hub(&up.url(), "");
    let before = berth.log().matches("configuration reloaded").count();
    berth.hangup();
    eventually("SIGHUP did not reload", &berth, async || {
        berth.log().matches("configuration reloaded").count() > before
    })
    .await;
    assert!(
        berth.log().contains("trigger=\"SIGHUP\""),
        "{}",
        berth.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_the_docs_say_reloads_applies_to_the_next_request() {
    let (first, second) = (FakeUpstream::start().await, FakeUpstream::start().await);
    for fake in [&first, &second] {
        fake.manifest("latest");
    }
    let upstreams = |url: &str| {
        format!(
            "{}{}",
            upstream_toml("fake.test", url, "default = true\ntag_ttl = \"0s\""),
            upstream_toml(
                "closed.test",
                "http://127.0.0.1:9",
                "host_prefix = \"closed\""
            )
        )
    };
    let before = upstreams(&first.url);
    let berth = Berth::start(&before);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let manifest = format!("{}/v2/proj/app/manifests/latest", berth.url());
    let get = async |url: &str, host: Option<&str>| {
        let mut request = client.get(url);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send().await.unwrap()
    };
    let by_host = Some("closed.mirror.test");
    assert_eq!(get(&manifest, by_host).await.status(), 200, "no domain yet");
    assert_eq!(get(&format!("{}/", berth.url()), None).await.status(), 200);
    let tag = "/v2/proj/app/manifests/latest";
    let asked_first = first.count(tag);
    assert!(asked_first > 0);

    // The upstream's url, `domain` and `url302` change.
    let after = format!(
        "domain = \"mirror.test\"\nurl302 = \"https://docs.example/\"\n{}",
        upstreams(&second.url)
    );
    berth.reconfigure(&before, &after);
    assert_eq!(get(&manifest, None).await.status(), 200);
    assert!(second.count(tag) > 0, "the new url was not asked");
    assert_eq!(first.count(tag), asked_first, "the old url was asked");
    let routed = get(&manifest, by_host).await;
    assert_eq!(
        routed.status(),
        502,
        "closed.mirror.test goes to closed.test"
    );
    let home = get(&format!("{}/", berth.url()), None).await;
    assert_eq!(home.status(), 302);
    assert_eq!(home.headers()["location"], "https://docs.example/");

    // `[limits]` rates: one request a second, none above it.
    berth.reconfigure(&after, &format!("{after}\n[limits]\nrate = 1\nburst = 0\n"));
    let statuses = [
        get(&manifest, None).await.status(),
        get(&manifest, None).await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 429]);
}
