//! The per-request log line and request metrics. The response body is
//! wrapped so that the line is written when the body has been sent (or the
//! client went away), with the bytes actually sent and the full duration.

use crate::metrics::{Metrics, RouteLabels};
use crate::pull::Outcome;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;

/// What a handler learned, for the request's log line and metrics.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    pub(crate) route: &'static str,
    pub(crate) upstream: Option<String>,
    pub(crate) repo: Option<String>,
    pub(crate) outcome: Option<Outcome>,
}

/// A response body that logs the request when it is done.
#[derive(Debug)]
pub(crate) struct LoggedBody {
    inner: Body,
    trail: Trail,
    status: u16,
    span: tracing::Span,
    started: Instant,
    sent: u64,
    finished: bool,
    metrics: Arc<Metrics>,
}

impl LoggedBody {
    pub(crate) fn wrap(
        inner: Body,
        trail: Trail,
        status: u16,
        span: tracing::Span,
        started: Instant,
        metrics: Arc<Metrics>,
    ) -> Body {
        metrics
            .http_requests
            .get_or_create(&RouteLabels {
                route: trail.route,
                status,
            })
            .inc();
        Body::new(Self {
            inner,
            trail,
            status,
            span,
            started,
            sent: 0,
            finished: false,
            metrics,
        })
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    self.sent += n;
                    self.metrics.served_bytes.inc_by(n);
                }
            }
            Poll::Ready(None) => self.finished = true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let finished = self.finished || self.inner.is_end_stream();
        let t = &self.trail;
        self.span.in_scope(|| {
            tracing::info!(
                route = t.route,
                upstream = t.upstream.as_deref().unwrap_or("-"),
                repo = t.repo.as_deref().unwrap_or("-"),
                cache = t.outcome.map_or("-", Outcome::as_str),
                status = self.status,
                bytes = self.sent,
                complete = finished,
                ms = self.started.elapsed().as_millis() as u64,
                "served"
            );
        });
    }
}
