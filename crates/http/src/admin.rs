//! The admin endpoints, served only when an admin listener or a token is
//! configured: `POST /admin/cache/purge?pattern=P` (`P` as in `berth cache
//! purge`: a short name such as `team/app` or `nginx` is the repository a
//! pull would route it to) and `POST /admin/cache/gc`. With a token, each request must carry it as
//! `Authorization: Bearer <token>`; a wrong or missing one gets 401 and
//! nothing runs. Answers are JSON; errors use the OCI envelope.

use crate::HttpState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_cache::{Maintenance, PinPattern};
use berth_config::{Secret, qualify_repository};
use berth_oci::ErrorCode;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

/// What the admin handlers share.
#[derive(Debug)]
struct AdminState {
    maintenance: Maintenance,
    token: Option<Secret>,
    /// The serving berth, for the upstreams in force: a short name in a
    /// purge pattern is read as a pull would route it.
    serving: Arc<HttpState>,
}

/// The admin endpoints over `maintenance`, guarded by `token` when one is
/// given.
pub fn admin_router(
    maintenance: Maintenance,
    token: Option<Secret>,
    serving: Arc<HttpState>,
) -> Router {
    Router::new()
        .route("/admin/cache/purge", post(purge))
        .route("/admin/cache/gc", post(gc))
        .with_state(Arc::new(AdminState {
            maintenance,
            token,
            serving,
        }))
}

/// What an admin listener serves: the admin endpoints, `/metrics` and the
/// health routes; any other path gets a 404 that says what is here.
pub fn admin_listener_router(
    maintenance: Maintenance,
    token: Option<Secret>,
    serving: Arc<HttpState>,
    metrics: Arc<berth_metrics::Metrics>,
) -> Router {
    admin_router(maintenance, token, serving)
        .merge(crate::metrics_routes(Arc::clone(&metrics)))
        .merge(crate::health_routes(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "the admin listener serves /metrics, /health, POST /admin/cache/purge and POST /admin/cache/gc",
            )
        })
}

/// Only requests that name the admin listener by an address, `localhost`,
/// or the configured `domain` (or a name below it): a page whose own
/// name was rebound to the listener's address (DNS rebinding) names its
/// own host, and is refused.
pub fn admin_hosts_only(router: Router, domain: Option<String>) -> Router {
    let domain = Arc::new(domain);
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let domain = Arc::clone(&domain);
            async move {
                let host = request
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .or_else(|| request.uri().authority().map(http::uri::Authority::as_str));
                match host {
                    Some(host) if !admin_host_allowed(host, domain.as_deref()) => ApiError::new(
                        StatusCode::MISDIRECTED_REQUEST,
                        ErrorCode::Denied,
                        "the admin listener answers only to its address, localhost or the configured domain",
                    )
                    .into_response(),
                    _ => next.run(request).await,
                }
            }
        },
    ))
}

/// Whether `host` (a `Host` value, perhaps with a port) names the admin
/// listener in a way no other site's page can.
fn admin_host_allowed(host: &str, domain: Option<&str>) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || domain.is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            name == d || name.ends_with(&format!(".{d}"))
        })
}

/// Equal without a timing that tells how much of `given` was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
pub(crate) fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    bearer(headers).is_some_and(|given| same_secret(given.as_bytes(), token.expose().as_bytes()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Why a state-changing request looks like one a browser sent from
/// another site (a form posted by some page, or a script), if it does:
/// `Origin` of another host, `Sec-Fetch-Site` other than same-origin, or
/// a content type a form can send. Tools (`curl -X POST`) send none.
fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST);
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| url::Url::parse(o).ok())
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            });
        if origin_host.is_none() || origin_host.as_deref() != host {
            return Some("it comes from a page of another origin");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Some("the browser says it comes from another site");
    }
    let form_type = text(header::CONTENT_TYPE).is_some_and(|t| {
        let t = t
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            t.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        )
    });
    form_type.then_some("its content type is one any web page's form can send")
}

/// The refusal of a request that may not run, or `None`.
fn refusal(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    if let Some(why) = cross_site(headers) {
        tracing::warn!(why, "admin request refused as cross-site");
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Denied,
                format!("admin request refused: {why}; send it without a browser (curl -X POST)"),
            )
            .into_response(),
        );
    }
    let Some(token) = &state.token else {
        return None;
    };
    match bearer(headers) {
        Some(given) if same_secret(given.as_bytes(), token.expose().as_bytes()) => None,
        other => {
            let message = if other.is_some() {
                "the admin token is wrong"
            } else {
                "the admin endpoints need `Authorization: Bearer <admin token>`"
            };
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
                    .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"berth admin\""),
            );
            Some(response)
        }
    }
}

fn json(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// A maintenance failure: its cause (paths included) goes to the log, and
/// the client learns only that it failed.
fn failed(e: &berth_cache::CacheError) -> Response {
    tracing::error!(error = %e, "admin maintenance failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unknown,
        "the store could not be changed; berth's log says why",
    )
    .into_response()
}

#[cfg(test)]
mod host_tests {
    use super::{admin_host_allowed, failed};

    #[tokio::test]
    async fn a_failed_maintenance_names_no_path_to_the_client() {
        let e = berth_cache::CacheError::Io {
            op: "remove",
            subject: "/srv/berth/blobs/ab/secret".to_owned(),
            error: std::io::Error::other("EIO"),
        };
        let response = failed(&e);
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("could not be changed"), "{body}");
        assert!(
            !body.contains("/srv/berth") && !body.contains("EIO"),
            "{body}"
        );
    }

    #[test]
    fn only_addresses_localhost_and_the_domain_name_the_admin_listener() {
        for host in [
            "127.0.0.1:5090",
            "10.0.0.5",
            "[::1]:5090",
            "localhost:5090",
            "admin.berth.example",
            "berth.example:1",
        ] {
            assert!(admin_host_allowed(host, Some("berth.example")), "{host}");
        }
        for host in [
            "evil.example:5090",
            "berth.example.evil.example",
            "localhost.evil.example",
            "[zz]:1",
        ] {
            assert!(!admin_host_allowed(host, Some("berth.example")), "{host}");
        }
        assert!(!admin_host_allowed("berth.example", None));
    }
}

#[derive(Debug, serde::Deserialize)]
struct PurgeQuery {
    pattern: Option<String>,
}

async fn purge(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(query): Query<PurgeQuery>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let Some(asked) = query.pattern else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            "give the repositories to purge as ?pattern=upstream/repository (`*` one segment, `**` any)",
        )
        .into_response();
    };
    let live = state.serving.live();
    let upstreams = live.origins.upstreams().all();
    let text = qualify_repository(&upstreams.iter().map(|u| u.config()), &asked);
    let Some(pattern) = PinPattern::parse(&text) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameInvalid,
            format!("{asked:?} is not a pattern like docker.io/library/* or ghcr.io/org/**"),
        )
        .into_response();
    };
    match state.maintenance.purge(pattern).await {
        Ok(report) => json(&serde_json::json!({
            "asked": asked,
            "pattern": text,
            "tags": report.tags.len(),
            "blobs": report.blobs.len(),
            "bytes": report.bytes,
        })),
        Err(e) => failed(&e),
    }
}

async fn gc(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    match state.maintenance.collect_garbage().await {
        Ok(report) => json(&serde_json::json!({
            "tags": report.tags,
            "manifest_types": report.manifest_types,
        })),
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn a_secret_matches_only_itself() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!same_secret(b"", b"0123456789abcdef"));
    }
}
