//! GET and HEAD of blobs, with single-range support on cached blobs and on
//! blobs still being fetched.

use crate::access_log::Trail;
use crate::admit::Admitted;
use crate::error::ApiError;
use crate::manifests::cache_header;
use crate::range::{RangeAnswer, parse_range};
use crate::{HttpState, Incoming, api_headers, zero_copy};
use axum::body::Body;
use axum::response::Response;
use berth_cache::BlobBytes;
use berth_oci::Digest;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::sync::Arc;

fn blob_headers(headers: &mut HeaderMap, digest: &Digest) {
    api_headers(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        headers.insert("docker-content-digest", v.clone());
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
            headers.insert(header::ETAG, etag);
        }
    }
}

/// A `307` to where the client fetches the stored blob itself (a
/// presigned URL of its object); its `Range`, if any, goes with it.
fn redirect(location: &str, digest: &Digest, x_cache: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let headers = response.headers_mut();
    api_headers(headers);
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        headers.insert("docker-content-digest", v);
    }
    headers.insert("x-cache", HeaderValue::from_static(x_cache));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

pub(crate) async fn serve(
    state: &HttpState,
    admitted: &Admitted,
    digest: &Digest,
    incoming: &Incoming<'_>,
    trail: &mut Trail,
) -> Result<Response, ApiError> {
    if incoming.method == Method::HEAD {
        let (size, outcome) = state
            .pull
            .blob_size(&admitted.origin, &admitted.repo, digest)
            .await?;
        trail.outcome = Some(outcome);
        let mut response = Response::new(Body::empty());
        blob_headers(response.headers_mut(), digest);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        return Ok(response);
    }
    let source = state
        .pull
        .open_blob(&admitted.origin, &admitted.repo, digest)
        .await?;
    trail.outcome = Some(source.outcome);
    let x_cache = cache_header(source.outcome);
    if let Some(location) = source.redirect_url().await {
        return Ok(redirect(&location, digest, x_cache));
    }
    let range_header = incoming
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| source.seekable());
    let (status, start, end) = match source.size {
        None => (StatusCode::OK, 0, None),
        Some(size) => match parse_range(range_header, size) {
            RangeAnswer::Full => (StatusCode::OK, 0, Some(size)),
            RangeAnswer::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, Some(end)),
            RangeAnswer::Unsatisfiable => return Err(ApiError::range_not_satisfiable(size)),
        },
    };
    let total = source.size;
    let bytes = state.pull.stream_blob(source, start, end).await?;
    let body = match (bytes, &incoming.outbox) {
        (BlobBytes::Memory(bytes), _) => Body::from(bytes),
        (BlobBytes::Span(span), Some(outbox)) if span.local_file().is_some() => {
            zero_copy::body(span, Arc::clone(outbox))
        }
        (bytes, _) => match &incoming.budget {
            Some(budget) => budget.body(bytes.into_stream()),
            None => Body::from_stream(bytes.into_stream()),
        },
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    blob_headers(headers, digest);
    headers.insert("x-cache", HeaderValue::from_static(x_cache));
    if let Some(end) = end {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let (Some(end), Some(total)) = (end, total)
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1))
    {
        headers.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}
