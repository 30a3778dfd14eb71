//! Writes in pass-through mode: a client's blob upload (POST, PATCH, PUT)
//! or manifest PUT goes to the upstream itself (never a mirror: a push
//! must land where it is pulled from), with the client's own
//! `Authorization` and only the headers a write needs, its body streamed
//! as it arrives. A body cannot be sent twice, so there is no retry and no
//! failover; upstream's answer comes back as it is, its body bounded.

use crate::{Upstream, UpstreamError};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};

/// Largest answer body read back from a write (upstream's error bodies).
const MAX_WRITE_ANSWER: usize = 64 << 10;

/// Request headers a write carries upstream; nothing else of the client's.
const WRITE_HEADERS: [HeaderName; 3] = [
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::CONTENT_RANGE,
];

/// Answer headers handed back to the client (`Location` is the edge's to
/// rewrite).
const ANSWER_HEADERS: [&str; 8] = [
    "location",
    "content-type",
    "range",
    "docker-upload-uuid",
    "docker-content-digest",
    "oci-chunk-min-length",
    "oci-subject",
    "www-authenticate",
];

/// A client's write, as it goes upstream.
#[derive(Debug)]
pub struct Write<'a> {
    /// POST, PATCH or PUT.
    pub method: Method,
    /// The path below `/v2/`, with the upstream's repository name.
    pub path: &'a str,
    /// The query to send (already checked by the edge).
    pub query: Option<&'a str>,
    /// The client's request headers; only [`WRITE_HEADERS`] are sent.
    pub headers: &'a HeaderMap,
    /// The client's `Authorization`, if any.
    pub client: Option<&'a str>,
}

/// What upstream answered to a write.
#[derive(Debug)]
pub struct WriteAnswer {
    /// Its status.
    pub status: u16,
    /// The headers a client of a push needs, as upstream sent them.
    pub headers: HeaderMap,
    /// Its body, at most 64 KiB.
    pub body: Bytes,
}

impl Upstream {
    /// Send a client's write to the upstream, streaming `body` as it is
    /// polled.
    pub async fn forward_write<S, E>(
        &self,
        write: &Write<'_>,
        body: S,
    ) -> Result<WriteAnswer, UpstreamError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let body = reqwest::Body::wrap_stream(body);
        let mut url = self.mirrors[0]
            .url
            .join(&format!("/v2/{}", write.path))
            .map_err(|e| self.invalid(&format!("cannot build URL: {e}")))?;
        url.set_query(write.query);
        let mut builder = self.http.request(write.method.clone(), url).body(body);
        for name in WRITE_HEADERS {
            for value in write.headers.get_all(&name) {
                builder = builder.header(&name, value);
            }
        }
        if let Some(client) = write.client {
            builder = builder.header(http::header::AUTHORIZATION, client);
        }
        let sent = builder.send().await;
        let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
        self.metrics.upstream_request(self.name(), "push", status);
        let response = sent.map_err(|e| UpstreamError::from_transport(self.name(), &e))?;
        let mut headers = HeaderMap::new();
        for name in ANSWER_HEADERS {
            for value in response.headers().get_all(name) {
                headers.append(HeaderName::from_static(name), value.clone());
            }
        }
        let body = crate::body::read_limited(response, MAX_WRITE_ANSWER, self.name()).await?;
        Ok(WriteAnswer {
            status,
            headers,
            body,
        })
    }
}
