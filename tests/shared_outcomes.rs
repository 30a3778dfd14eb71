//! What many requests for one thing cost upstream when the answer is a
//! failure, against the real binary and the fault-serving fake: clients
//! coalesced behind a trickled manifest share its failure instead of
//! retrying one after another; pass-through requests with made-up
//! credentials, and token requests, get a small budget per client, and a
//! grant check runs once per credential and repository; a token request's
//! unknown or oddly cased parameters never reach the realm.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};
use bytes::Bytes;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn clients_behind_a_failing_flight_share_its_failure() {
    // One byte every 100 ms: each attempt ends at manifest_timeout.
    let up = FakeUpstream::start().await;
    up.route(
        "proj/app/manifests/latest",
        Canned {
            body: Bytes::from_static(FakeUpstream::MANIFEST),
            content_type: "application/vnd.oci.image.manifest.v1+json",
            pieces: FakeUpstream::MANIFEST.len(),
            pause: Duration::from_millis(100),
            ..Canned::default()
        },
    );
    let limits = "idle_timeout = \"1s\"\nmanifest_timeout = \"2s\"\nretries = 0";
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        &format!("default = true\n{limits}"),
    ));
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("{}/v2/proj/app/manifests/latest", berth.url());
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .get(url)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in clients {
        answers.push(c.await.unwrap());
    }
    for (status, _) in &answers {
        assert_eq!(*status, 504, "{answers:?}");
    }
    // One exchange upstream, whose failure every waiter shared: none
    // tried again after it.
    assert_eq!(up.count("/manifests/latest"), 1, "{:?}", up.requests());
    let last = answers.iter().map(|(_, took)| *took).max().unwrap();
    assert!(
        last < Duration::from_secs(4),
        "the last client answered after {last:?}"
    );
}

/// A pass-through upstream: a realm on the fake that hands out `tok123`,
/// and content that needs it.
async fn passthrough_upstream() -> FakeUpstream {
    let up = FakeUpstream::start().await;
    up.route(
        "token",
        Canned {
            body: Bytes::from_static(br#"{"token":"tok123","expires_in":300}"#),
            content_type: "application/json",
            ..Canned::default()
        },
    );
    up.require_auth(
        "Bearer tok123",
        &format!("Bearer realm=\"{}/token\",service=\"fake\"", up.url),
    );
    up.challenge_ping();
    up.manifest("latest");
    up
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_credentials_cost_a_bounded_number_of_upstream_requests() {
    let up = passthrough_upstream().await;
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        "default = true\nauth_mode = \"passthrough\"",
    ));
    let client = reqwest::Client::new();
    let manifest = format!("{}/v2/proj/app/manifests/latest", berth.url());
    // A real client is served.
    let ok = client
        .get(&manifest)
        .bearer_auth("tok123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    up.reset_requests();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    // One after another: the per-address connection cap is not the
    // subject here.
    for i in 0..300 {
        let r = client.get(&manifest).bearer_auth(format!("made-up-{i}"));
        *statuses
            .entry(r.send().await.unwrap().status().as_u16())
            .or_default() += 1;
    }
    let upstream = up.count("/manifests/latest");
    assert!(upstream <= 25, "{upstream} upstream requests: {statuses:?}");
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 270,
        "{statuses:?}"
    );
    // The real client's credential is known: no budget spent, still served.
    let ok = client
        .get(&manifest)
        .bearer_auth("tok123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // One credential, one repository, many requests at once: one check.
    let fresh = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        "default = true\nauth_mode = \"passthrough\"",
    ));
    up.reset_requests();
    let same: Vec<_> = (0..10)
        .map(|_| {
            let request = client
                .get(format!("{}/v2/proj/app/manifests/latest", fresh.url()))
                .bearer_auth("wrong-but-the-same");
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    for s in same {
        assert_eq!(s.await.unwrap(), 401);
    }
    assert_eq!(up.count("/manifests/latest"), 1, "{:?}", up.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_requests_are_budgeted_and_carry_only_known_parameters() {
    let up = passthrough_upstream().await;
    let berth = Berth::start(&upstream_toml(
        "fake.test",
        &up.url,
        "default = true\nauth_mode = \"passthrough\"",
    ));
    let client = reqwest::Client::new();
    let token = format!(
        "{}/token?Service=fake.test&Scope=repository:proj/app:push,delete&SCOPE=repository:proj/app:pull&foo=bar&Account=alice",
        berth.url()
    );
    let r = client
        .get(&token)
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let asked: Vec<String> = up
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /token"))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let query = asked[0].split_whitespace().nth(1).unwrap();
    for gone in [
        "Scope=", "SCOPE=", "push", "delete", "foo", "Account", "Service",
    ] {
        assert!(!query.contains(gone), "{gone} reached the realm: {query}");
    }
    assert!(
        query.contains("scope=repository%3Aproj%2Fapp%3Apull"),
        "{query}"
    );
    assert!(query.contains("account=alice"), "{query}");

    up.reset_requests();
    let mut limited = 0;
    for _ in 0..200 {
        let r = client.get(&token).basic_auth("alice", Some("pw"));
        if r.send().await.unwrap().status() == 429 {
            limited += 1;
        }
    }
    let relayed = up.count("GET /token");
    assert!(relayed <= 25, "{relayed} token requests reached the realm");
    assert!(limited >= 175, "{limited} of 200 limited");
}
