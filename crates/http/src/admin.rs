//! The admin endpoints, served only when an admin listener or a token is
//! configured: `POST /admin/cache/purge?pattern=P` and
//! `POST /admin/cache/gc`. With a token, each request must carry it as
//! `Authorization: Bearer <token>`; a wrong or missing one gets 401 and
//! nothing runs. Answers are JSON; errors use the OCI envelope.

use crate::error::ApiError;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_cache::{Maintenance, PinPattern};
use berth_config::Secret;
use berth_oci::ErrorCode;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

/// What the admin handlers share.
#[derive(Debug)]
struct AdminState {
    maintenance: Maintenance,
    token: Option<Secret>,
}

/// The admin endpoints over `maintenance`, guarded by `token` when one is
/// given.
pub fn admin_router(maintenance: Maintenance, token: Option<Secret>) -> Router {
    Router::new()
        .route("/admin/cache/purge", post(purge))
        .route("/admin/cache/gc", post(gc))
        .with_state(Arc::new(AdminState { maintenance, token }))
}

/// What an admin listener serves: the admin endpoints, `/metrics` and the
/// health routes; any other path gets a 404 that says what is here.
pub fn admin_listener_router(
    maintenance: Maintenance,
    token: Option<Secret>,
    metrics: Arc<berth_metrics::Metrics>,
) -> Router {
    admin_router(maintenance, token)
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

/// Equal without a timing that tells how much of `given` was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// The refusal of a request that may not run, or `None`.
fn refusal(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &state.token else {
        return None;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
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

fn failed(e: &berth_cache::CacheError) -> Response {
    tracing::error!(error = %e, "admin maintenance failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unknown,
        format!("the store could not be changed: {e}"),
    )
    .into_response()
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
    let Some(text) = query.pattern else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            "give the repositories to purge as ?pattern=upstream/repository (`*` one segment, `**` any)",
        )
        .into_response();
    };
    let Some(pattern) = PinPattern::parse(&text) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameInvalid,
            format!("{text:?} is not a pattern like docker.io/library/* or ghcr.io/org/**"),
        )
        .into_response();
    };
    match state.maintenance.purge(pattern).await {
        Ok(report) => json(&serde_json::json!({
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
