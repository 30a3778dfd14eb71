//! The HTTP edge: the registry API router, its handlers, and the one error
//! type that becomes a response. Each registry request goes parse → admit
//! → pull → response, inside one tracing span, and ends in one log line.
//!
//! Uses `berth-pull`, `berth-cache` (the body types it sends),
//! `berth-upstream` (the upstream set and tag lists), `berth-config`,
//! `berth-oci` and `berth-metrics`.

mod access;
mod access_log;
mod admin;
mod admit;
mod blobs;
mod budget;
mod catalog;
mod cors;
mod error;
mod landing;
mod listings;
mod manifests;
mod ops;
mod ops_guard;
mod passthrough;
mod peer;
mod push;
pub mod range;
mod redirect;
mod route;
mod server;
mod zero_copy;

use access_log::{LoggedBody, Trail};
pub use admin::{admin_hosts_only, admin_listener_router, admin_router};
use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use berth_access::Access;
use berth_metrics::Metrics;
use berth_pull::{Origins, PullService};
use budget::BodyBudget;
use error::ApiError;
use http::{HeaderMap, HeaderValue, Method, header};
pub use ops::ops_routes;
pub use ops_guard::public_ops_routes;
pub use peer::{PEER_BLOBS, peer_router};
pub use redirect::redirect_router;
use server::ConnInfo;
pub use server::Server;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;
use tracing::Instrument;
use zero_copy::Outbox;

/// Everything handlers share.
#[derive(Debug)]
pub struct HttpState {
    /// The engine.
    pub pull: Arc<PullService>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Source of request ids.
    pub next_request_id: AtomicU64,
    /// What a configuration reload replaces: each request takes the
    /// settings in force when it arrives and keeps them to its end.
    pub live: ArcSwap<Live>,
    /// Per client address: pass-through requests with credentials
    /// upstream has not confirmed, and token relays (see `passthrough`).
    pub(crate) relay_budget: passthrough::RelayBudget,
    /// What `/stats` says about the cluster, when this berth is in one.
    pub cluster: Option<Arc<dyn ClusterView>>,
}

/// The cluster as `/stats` and the dashboard show it.
#[async_trait::async_trait]
pub trait ClusterView: Send + Sync + std::fmt::Debug {
    /// The `cluster` object of `/stats`.
    async fn snapshot(&self) -> serde_json::Value;
}

/// The settings a reload can change while berth serves.
#[derive(Debug)]
pub struct Live {
    /// Configured upstreams: their clients, and each one's origin (with
    /// its cache policy) as a request takes it.
    pub origins: Arc<Origins>,
    /// Base domain for Host routing.
    pub domain: Option<String>,
    /// Who may use the mirror.
    pub access: Arc<Access>,
    /// Where requests outside the registry API are redirected.
    pub url302: Option<url::Url>,
    /// Origins whose browser scripts may use the API (CORS).
    pub cors_origins: Vec<String>,
}

impl HttpState {
    /// The state of an edge over `pull`, with `live` settings.
    pub fn new(pull: Arc<PullService>, metrics: Arc<Metrics>, live: Live) -> Self {
        Self {
            pull,
            metrics,
            next_request_id: AtomicU64::new(0),
            live: ArcSwap::from_pointee(live),
            relay_budget: passthrough::RelayBudget::default(),
            cluster: None,
        }
    }

    /// The settings in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}

async fn outside_api(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: http::Uri,
) -> Response {
    landing::outside_api(state.live().url302.as_ref(), &method, &uri)
}

/// The registry API and the health routes, with the fallback every
/// unknown path gets.
pub fn router(state: Arc<HttpState>) -> Router {
    let metrics = Arc::clone(&state.metrics);
    let cors_state = Arc::clone(&state);
    Router::new()
        .route("/v2", any(api))
        .route("/v2/", any(api))
        .route("/v2/{*rest}", any(api))
        .route("/token", any(passthrough::token))
        .route("/auth/token", any(passthrough::token))
        .fallback(outside_api)
        .with_state(state)
        .merge(health_routes(metrics))
        .layer(axum::middleware::from_fn_with_state(cors_state, cors::cors))
}

/// `/health` and `/healthz`.
pub fn health_routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/healthz", get(health))
        .with_state(metrics)
}

/// `/metrics`: on the public port, or on the admin listener when there is
/// one.
pub fn metrics_routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(metrics)
}

const API_VERSION: &str = "registry/2.0";

/// The answer to `/v2/`: the API is here (and the login, if any, holds).
fn base(method: &Method) -> Result<Response, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::read_only());
    }
    let mut r = ([(header::CONTENT_TYPE, "application/json")], "{}").into_response();
    api_headers(r.headers_mut());
    Ok(r)
}

/// Count a request to an operational route.
pub(crate) fn count(metrics: &Metrics, route: &'static str, status: u16) {
    metrics
        .http_requests
        .get_or_create(&berth_metrics::RouteLabels { route, status })
        .inc();
}

async fn health(State(metrics): State<Arc<Metrics>>) -> Response {
    count(&metrics, "health", 200);
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    count(&metrics, "metrics", 200);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// The parts of a request the handlers read.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    pub(crate) method: &'a Method,
    pub(crate) headers: &'a HeaderMap,
    /// Set on plain HTTP/1 connections, where blob bodies can be sent from
    /// the file with `sendfile`.
    pub(crate) outbox: Option<Arc<Outbox>>,
    /// What streamed bodies on this connection may hold in memory.
    pub(crate) budget: Option<BodyBudget>,
}

async fn api(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let id = state.next_request_id.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (request, body) = request.into_parts();
    let conn = request.extensions.get::<ConnInfo>();
    // Zero-copy bodies only on HTTP/1: HTTP/2 frames body chunks itself.
    let outbox = conn
        .filter(|_| request.version <= http::Version::HTTP_11)
        .and_then(|info| info.outbox.clone());
    let budget = conn.map(|info| info.budget.clone());
    let peer = conn.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |info| {
        info.peer.ip()
    });
    let method = request.method.clone();
    let path = request.uri.path().to_owned();
    let client = conn.map(|info| tracing::field::display(info.peer));
    let span = tracing::info_span!("request", id, %method, path = %path, client);
    let mut trail = Trail {
        route: "invalid",
        ..Trail::default()
    };
    let response = dispatch(&state, &request, body, peer, (outbox, budget), &mut trail)
        .instrument(span.clone())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    let metrics = Arc::clone(&state.metrics);
    response.map(|body| LoggedBody::wrap(body, trail, status, span, started, metrics))
}

async fn dispatch(
    state: &HttpState,
    request: &http::request::Parts,
    body: Body,
    peer: std::net::IpAddr,
    (outbox, budget): (Option<Arc<Outbox>>, Option<BodyBudget>),
    trail: &mut Trail,
) -> Result<Response, ApiError> {
    let path = request.uri.path();
    let ping = path == "/v2" || path == "/v2/";
    if ping {
        trail.route = "base";
    }
    // The route is known (for the log and metrics) before the caller is
    // checked, so that a refusal is counted under what was asked for.
    let rest = path.strip_prefix("/v2/").unwrap_or_default();
    let listing_catalog = rest == "_catalog";
    let route = (!ping && !listing_catalog).then(|| route::parse(rest));
    if let Some(Ok(r)) = &route {
        trail.route = r.endpoint.route();
    } else if listing_catalog {
        trail.route = "catalog";
    }
    let live = state.live();
    let caller = access::caller(&live.access, peer, request, ping).await?;
    if listing_catalog {
        if request.method != Method::GET && request.method != Method::HEAD {
            return Err(ApiError::read_only());
        }
        access::rules(&live.access, &caller, request, None)?;
        return catalog::catalog(&state.pull, &live, &caller, request).await;
    }
    let query = request.uri.query();
    let ns = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "ns")
            .map(|(_, v)| v.into_owned())
    });
    let meta = admit::RequestMeta {
        ns: ns.as_deref(),
        host: request
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    };
    let base_url = || {
        passthrough::public_base(
            live.domain.as_deref(),
            &request.headers,
            request.extensions.get::<ConnInfo>(),
        )
    };
    if ping {
        access::rules(&live.access, &caller, request, None)?;
        // A pass-through registry's clients log in to it through berth.
        if let Some(upstream) =
            admit::ping_upstream(live.origins.upstreams(), live.domain.as_deref(), &meta)
            && upstream.config().auth_mode == berth_config::AuthMode::Passthrough
            && !request.headers.contains_key(header::AUTHORIZATION)
        {
            return Err(passthrough::unauthorized(
                &base_url(),
                upstream.name(),
                None,
                format!(
                    "log in to this mirror with your {} account",
                    upstream.name()
                ),
            ));
        }
        return base(&request.method);
    }
    let Some(route) = route else {
        return base(&request.method);
    };
    let route = route?;
    let write = push::is_write(&request.method, &route.endpoint);
    if !write
        && (request.method != Method::GET && request.method != Method::HEAD
            || matches!(route.endpoint, route::Endpoint::Upload(_)))
    {
        return Err(ApiError::read_only());
    }
    let mut admitted = admit::admit(&live.origins, live.domain.as_deref(), &route, &meta)?;
    trail.upstream = Some(admitted.origin.name().to_owned());
    trail.repo = Some(admitted.repo.to_string());
    let target = access::Target {
        upstream: admitted.origin.name(),
        repository: admitted.repo.as_str(),
        endpoint: &route.endpoint,
    };
    access::rules(&live.access, &caller, request, Some(target))?;
    let passthrough = admitted.origin.is_passthrough();
    if passthrough {
        let authorization = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        admitted.origin = admitted.origin.clone().for_client(authorization);
        if !state.pull.credential_known(&admitted.origin) {
            state.relay_budget.unconfirmed(caller.ip)?;
        }
    }
    if write {
        let base = base_url();
        let write = push::WriteRequest {
            method: &request.method,
            headers: &request.headers,
            query,
            ns: ns.as_deref(),
            base: &base,
        };
        return push::forward(&state.pull, &admitted, &route, &write, body).await;
    }
    let incoming = Incoming {
        method: &request.method,
        headers: &request.headers,
        outbox,
        budget,
    };
    let answer = serve(state, &admitted, &route, query, &incoming, trail).await;
    match answer {
        Err(e) if passthrough => Err(passthrough::refusal_to_challenge(
            e,
            &base_url(),
            admitted.origin.name(),
            &route.name,
        )),
        other => other,
    }
}

/// The handler of the route's endpoint.
async fn serve(
    state: &HttpState,
    admitted: &admit::Admitted,
    route: &route::Route,
    query: Option<&str>,
    incoming: &Incoming<'_>,
    trail: &mut Trail,
) -> Result<Response, ApiError> {
    match &route.endpoint {
        route::Endpoint::Manifest(reference) => {
            manifests::serve(state, admitted, reference, incoming, trail).await
        }
        route::Endpoint::Blob(digest) => {
            blobs::serve(state, admitted, digest, incoming, trail).await
        }
        route::Endpoint::Tags => listings::tags(state, admitted, query).await,
        route::Endpoint::Referrers(digest) => {
            listings::referrers(state, admitted, digest, query).await
        }
        route::Endpoint::Upload(_) => Err(ApiError::read_only()),
    }
}

/// Headers every successful registry answer carries.
pub(crate) fn api_headers(headers: &mut HeaderMap) {
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static(API_VERSION),
    );
}

/// An empty body (HEAD) or the given one.
pub(crate) fn body_for(method: &Method, body: impl FnOnce() -> Body) -> Body {
    if method == Method::HEAD {
        Body::empty()
    } else {
        body()
    }
}
