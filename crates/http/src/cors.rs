//! CORS for browser clients (registry UIs) of the configured origins:
//! answers to their preflights, and the headers that let their scripts
//! read the registry's answers. Off unless `[access] cors_origins` lists
//! an origin; `"*"` allows any, without credentials.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::sync::Arc;

/// Response headers a browser script may read.
const EXPOSED: &str = "Docker-Content-Digest, Docker-Distribution-API-Version, Content-Range, Link, \
                       WWW-Authenticate, Warning, X-Cache";

/// The origin of `headers`, if the configured list allows it.
fn allowed<'h>(origins: &[String], headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
        .then_some(origin)
}

fn decorate(headers: &mut HeaderMap, origins: &[String], origin: &HeaderValue) {
    if origins.iter().any(|o| o == "*") {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The middleware: preflights answered here, other answers decorated.
pub(crate) async fn cors(
    State(state): State<Arc<crate::HttpState>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let live = state.live();
    let origins = &live.cors_origins;
    if origins.is_empty() {
        return next.run(request).await;
    }
    let origin = allowed(origins, request.headers()).cloned();
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match origin {
        Some(origin) if preflight => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            decorate(headers, origins, &origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Accept, Range"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            response
        }
        Some(origin) => {
            let mut response = next.run(request).await;
            let headers = response.headers_mut();
            decorate(headers, origins, &origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
            response
        }
        None => next.run(request).await,
    }
}
