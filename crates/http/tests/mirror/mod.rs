//! The mirror the in-process tests drive: berth's router and engine over
//! the given stores, with `fake` as its default upstream, `/metrics`
//! beside the registry API.

use axum::Router;
use berth_cache::{BlobStore, IndexStore};
use berth_config::Config;
use berth_http::{HttpState, Live, metrics_routes, router};
use berth_metrics::Metrics;
use berth_pull::{Origins, PullService, Surroundings};
use berth_testkit::fake_upstream::FakeUpstream;
use berth_upstream::UpstreamSet;
use std::sync::Arc;

/// A mirror of `fake` (with the upstream keys `extra`) over `blobs` and
/// `index`, taking single flight and the clock from `surroundings`.
pub(crate) fn mirror(
    fake: &FakeUpstream,
    extra: &str,
    blobs: Arc<dyn BlobStore>,
    index: Arc<dyn IndexStore>,
    surroundings: Surroundings,
) -> Router {
    let text = format!(
        "builtin_upstreams = false\n[[upstreams]]\nname = \"fake.test\"\nurl = {:?}\ndefault = true\n{extra}\n",
        fake.url
    );
    let config = Config::from_toml(&text, &|_| None).unwrap();
    let metrics = Arc::new(Metrics::new());
    let upstreams = UpstreamSet::new(&config.upstreams, &metrics).unwrap();
    let pull = PullService::with_surroundings(
        blobs,
        index,
        Arc::clone(&metrics),
        config.cache.eager_bytes,
        surroundings,
    );
    let live = Live {
        origins: Arc::new(Origins::new(upstreams, &config.upstreams, None)),
        domain: None,
        access: Arc::new(berth_access::Access::load(&config.access).unwrap()),
        url302: None,
        cors_origins: Vec::new(),
    };
    router(Arc::new(HttpState::new(pull, Arc::clone(&metrics), live)))
        .merge(metrics_routes(metrics))
}
