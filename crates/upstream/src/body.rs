//! Reading a whole upstream answer (a manifest, a token, an error body)
//! into memory, refusing more than a limit, so an answer that never ends
//! costs bounded memory.

use crate::UpstreamError;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

/// Read a whole body, refusing more than `max` bytes.
pub(super) async fn read_limited(
    response: reqwest::Response,
    max: usize,
    upstream: &str,
) -> Result<Bytes, UpstreamError> {
    let mut out = BytesMut::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::from_transport(upstream, &e))?;
        if out.len() + chunk.len() > max {
            return Err(UpstreamError::Invalid {
                upstream: upstream.to_owned(),
                detail: format!("answer is larger than {max} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}
