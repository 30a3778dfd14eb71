//! Where an upstream's blob redirects may lead, against the real binary:
//! never to berth's own listeners (public or admin), even from an upstream
//! on a private network; and whether an upstream is on a private network
//! comes from its config or an IP literal, never from what its name
//! resolves to.

// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use berth_testkit::fake_upstream::{Canned, FakeUpstream};
use berth_testkit::{Berth, upstream_toml};

fn redirect(location: String) -> Canned {
    Canned {
        status: 307,
        headers: vec![("location", location)],
        content_type: "text/plain",
        ..Canned::default()
    }
}

/// GET `/v2/proj/app/blobs/<digest>` through `berth`: status and body.
async fn get_blob(berth: &Berth, digest: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}/v2/proj/app/blobs/{digest}", berth.url()))
        .await
        .unwrap();
    let status = r.status().as_u16();
    // A refused hop is an error answer; a body cut off by a digest
    // mismatch is an error too. Either way, what arrived is kept.
    let body = match r.bytes().await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<cut: {e}>"),
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_redirect_never_reaches_berths_own_listeners() {
    // An upstream on loopback (private by its IP literal) and a CDN beside it.
    let up = FakeUpstream::start().await;
    let cdn = FakeUpstream::start().await;
    let good = b"layer bytes served by a CDN on the private network";
    let good_digest = berth_testkit::checks::sha256(good);
    cdn.route(
        "cdn/good",
        Canned {
            body: bytes::Bytes::from_static(good),
            content_type: "application/octet-stream",
            ..Canned::default()
        },
    );
    let berth = Berth::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        upstream_toml("fake.test", &up.url, "default = true")
    ));
    let admin = berth.admin_url().await;
    up.route(
        &format!("proj/app/blobs/{good_digest}"),
        redirect(format!("{}/cdn/good", cdn.url)),
    );
    // The exemption still holds: a private upstream's CDN on loopback.
    let (status, body) = get_blob(&berth, &good_digest).await;
    assert_eq!(status, 200, "{body}\n{}", berth.log());
    assert_eq!(body.as_bytes(), good);

    let targets = [
        ("public", format!("{}/v2/", berth.url())),
        ("admin stats", format!("{admin}/stats")),
        ("admin metrics", format!("{admin}/metrics")),
        (
            "admin by another loopback spelling",
            admin.replace("127.0.0.1", "127.1") + "/stats",
        ),
        (
            "admin by name",
            admin.replace("127.0.0.1", "localhost") + "/stats",
        ),
    ];
    for (i, (what, target)) in targets.iter().enumerate() {
        let digest = berth_testkit::checks::sha256(format!("wanted {i}").as_bytes());
        up.route(
            &format!("proj/app/blobs/{digest}"),
            redirect(target.clone()),
        );
        let (status, body) = get_blob(&berth, &digest).await;
        assert_eq!(status, 502, "{what}: {body}");
        for leak in [
            "berth_",
            "hitRatio",
            "upstreams",
            "errors\":[{\"code\":\"UNAUTHORIZED",
        ] {
            assert!(!body.contains(leak), "{what}: {body}");
        }
    }
    assert!(
        berth.log().matches("own listener").count() >= targets.len(),
        "{}",
        berth.log()
    );
    // The admin listener saw none of these requests.
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stats_hits: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("berth_http_requests_total") && l.contains("route=\"stats\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(stats_hits, 0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_named_by_host_is_public_whatever_its_name_resolves_to() {
    let cdn = FakeUpstream::start().await;
    let data = b"a layer on an internal host";
    let digest = berth_testkit::checks::sha256(data);
    cdn.route(
        "cdn/layer",
        Canned {
            body: bytes::Bytes::from_static(data),
            content_type: "application/octet-stream",
            ..Canned::default()
        },
    );
    for (extra, allowed) in [("", false), ("private_network = true", true)] {
        let up = FakeUpstream::start().await;
        // `localhost` resolves to loopback, but a name proves nothing.
        let by_name = up.url.replace("127.0.0.1", "localhost");
        up.route(
            &format!("proj/app/blobs/{digest}"),
            redirect(format!("{}/cdn/layer", cdn.url)),
        );
        let before = cdn.count("/cdn/layer");
        let berth = Berth::start(&upstream_toml(
            "fake.test",
            &by_name,
            &format!("default = true\n{extra}"),
        ));
        let (status, body) = get_blob(&berth, &digest).await;
        if allowed {
            assert_eq!(status, 200, "{extra}: {body}");
            assert_eq!(body.as_bytes(), data);
            assert_eq!(cdn.count("/cdn/layer"), before + 1);
        } else {
            assert_eq!(status, 502, "{body}");
            assert_eq!(
                cdn.count("/cdn/layer"),
                before,
                "the internal host was dialled"
            );
            assert!(berth.logged("internal address"), "{}", berth.log());
        }
    }
}
