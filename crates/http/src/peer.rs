//! The peer endpoint: `GET /_berth/peer/blobs/<digest>`, how the replicas
//! of a cluster read a blob that one of them holds or is still
//! downloading. Only a request carrying the cluster secret
//! (`Authorization: Bearer …`) is answered; everyone else gets `401`, as if
//! there were nothing here. A peer never makes this replica go upstream:
//! what is neither stored nor being downloaded here is a `404`. The asking
//! replica ran its own client's access rules and private-content guard
//! before it asked. Bodies go out with `sendfile` where they are in a
//! local file, as for clients.

use crate::admin::bearer_matches;
use crate::error::ApiError;
use crate::range::{RangeAnswer, parse_range};
use crate::server::ConnInfo;
use crate::zero_copy::{self, Outbox};
use crate::{HttpState, api_headers};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use berth_cache::BlobBytes;
use berth_config::Secret;
use berth_oci::{Digest, ErrorCode};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

/// The path the peer endpoint answers under.
pub const PEER_BLOBS: &str = "/_berth/peer/blobs/{digest}";

/// The peer endpoint, answering requests that carry `secret`.
pub fn peer_router(state: Arc<HttpState>, secret: Secret) -> axum::Router {
    axum::Router::new()
        .route(PEER_BLOBS, axum::routing::get(blob))
        .with_state((state, Arc::new(secret)))
}

async fn blob(
    State((state, secret)): State<(Arc<HttpState>, Arc<Secret>)>,
    Path(digest): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers();
    if !bearer_matches(headers, &secret) {
        state.metrics.cluster.event("peer_refused");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "peer requests need the cluster secret",
        )
        .into_response();
    }
    // From the file with `sendfile` on plain HTTP/1, as for clients.
    let outbox = request
        .extensions()
        .get::<ConnInfo>()
        .filter(|_| request.version() <= http::Version::HTTP_11)
        .and_then(|info| info.outbox.clone());
    match serve(&state, &digest, headers, outbox).await {
        Ok(r) | Err(r) => r,
    }
}

async fn serve(
    state: &HttpState,
    digest: &str,
    headers: &HeaderMap,
    outbox: Option<Arc<Outbox>>,
) -> Result<Response, Response> {
    let digest: Digest = digest
        .parse()
        .map_err(|e| ApiError::bad_digest(e).into_response())?;
    let opened = state
        .pull
        .open_for_peer(&digest)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::BlobUnknown,
                format!("{digest} is neither stored nor being downloaded here"),
            )
            .into_response()
        })?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let total = opened.size;
    let (status, start, end) = match total {
        Some(size) => match parse_range(range, size) {
            RangeAnswer::Full => (StatusCode::OK, 0, Some(size)),
            RangeAnswer::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, Some(end)),
            RangeAnswer::Unsatisfiable => {
                return Err(ApiError::range_not_satisfiable(size).into_response());
            }
        },
        None => (StatusCode::OK, 0, None),
    };
    let bytes = state
        .pull
        .stream_blob(opened, start, end)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let counted = state.metrics.cluster.peer_bytes_out.clone();
    let body = match (bytes, outbox) {
        (BlobBytes::Span(span), Some(outbox)) if span.local_file().is_some() => {
            // Counted as sent: what a broken connection leaves unsent is
            // the asking replica's to fetch elsewhere.
            if let Some(end) = end {
                counted.inc_by(end - start);
            }
            zero_copy::body(span, outbox)
        }
        (bytes, _) => Body::from_stream(bytes.into_stream().map(move |chunk| {
            if let Ok(c) = &chunk {
                counted.inc_by(c.len() as u64);
            }
            chunk
        })),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    api_headers(h);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(end) = end {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    }
    if let (StatusCode::PARTIAL_CONTENT, Some(end), Some(total)) = (status, end, total)
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}
