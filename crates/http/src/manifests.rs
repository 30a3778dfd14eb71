//! GET and HEAD of manifests: exact upstream bytes with their media type,
//! digest, exact `Content-Length` (HEAD too) and ETag; a `Warning` header
//! when served stale.

use crate::access_log::Trail;
use crate::admit::Admitted;
use crate::error::ApiError;
use crate::{HttpState, Incoming, api_headers, body_for};
use axum::body::Body;
use axum::response::Response;
use berth_oci::Reference;
use berth_pull::{ManifestRequest, Outcome};
use http::{HeaderValue, StatusCode, header};

pub(crate) async fn serve(
    state: &HttpState,
    admitted: &Admitted,
    reference: &Reference,
    incoming: &Incoming<'_>,
    trail: &mut Trail,
) -> Result<Response, ApiError> {
    let accept: Vec<String> = incoming
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let request = ManifestRequest {
        origin: &admitted.origin,
        repo: &admitted.repo,
        reference,
        accept: &accept,
    };
    let answer = state.pull.manifest(&request).await?;
    trail.outcome = Some(answer.outcome);
    let len = answer.bytes.len();
    let digest = answer.digest.to_string();
    let mut response = Response::new(body_for(incoming.method, || Body::from(answer.bytes)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    api_headers(headers);
    let content_type = HeaderValue::from_str(&answer.media_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&digest) {
        headers.insert("docker-content-digest", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, v);
    }
    cache_headers(headers, answer.outcome);
    Ok(response)
}

/// `X-Cache`, and for an answer served from the cache because upstream
/// failed, `Warning: 110`.
pub(crate) fn cache_headers(headers: &mut http::HeaderMap, outcome: Outcome) {
    headers.insert("x-cache", HeaderValue::from_static(cache_header(outcome)));
    if outcome == Outcome::Stale {
        headers.insert(
            header::WARNING,
            HeaderValue::from_static("110 berth \"Response is stale: upstream unavailable\""),
        );
    }
}

pub(crate) fn cache_header(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Hit | Outcome::Revalidated => "HIT",
        Outcome::Stale => "STALE",
        Outcome::Miss | Outcome::Coalesced | Outcome::Direct | Outcome::Ahead => "MISS",
    }
}
