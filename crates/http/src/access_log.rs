//! The per-request log line and request metrics. The response body is
//! wrapped so that the line is written when the body has been sent (or the
//! client went away), with the bytes actually sent and the full duration.
//!
//! Whether the body was complete is seen by looking one frame ahead: with
//! a `Content-Length`, hyper stops polling a body once that many bytes are
//! out and never sees its end, so the wrapper asks the inner body for its
//! next frame as it hands one over (keeping the frame if one is ready).

use axum::body::Body;
use berth_metrics::{Metrics, RouteLabels};
use berth_pull::Outcome;
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
    /// A frame taken from `inner` ahead of its turn.
    peeked: Option<Result<Frame<Bytes>, axum::Error>>,
    /// `inner` has ended.
    ended: bool,
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
            peeked: None,
            ended: false,
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
        let this = &mut *self;
        let item = match this.peeked.take() {
            Some(item) => item,
            None if this.ended => return Poll::Ready(None),
            None => match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.ended = true;
                    this.finished = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(item)) => item,
            },
        };
        if let Ok(frame) = &item
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            this.sent += n;
            this.metrics.served_bytes.inc_by(n);
            // Look ahead: this may have been the last frame.
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.ended = true;
                    this.finished = true;
                }
                Poll::Ready(Some(next)) => this.peeked = Some(next),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Some(item))
    }

    fn is_end_stream(&self) -> bool {
        self.peeked.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let peeked = match &self.peeked {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        if peeked == 0 {
            return self.inner.size_hint();
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(peeked));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(peeked));
        }
        hint
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let finished = self.finished || self.is_end_stream();
        let t = &self.trail;
        let duration = self.started.elapsed();
        self.metrics.stats.served(&berth_metrics::Served {
            route: t.route,
            status: self.status,
            bytes: self.sent,
            upstream: t.upstream.as_deref(),
            repository: t.repo.as_deref(),
            duration,
        });
        self.metrics
            .http_duration
            .get_or_create(&berth_metrics::DurationLabels {
                route: t.route,
                cache: t.outcome.map_or("none", Outcome::as_str),
            })
            .observe(duration.as_secs_f64());
        self.span.in_scope(|| {
            tracing::info!(
                route = t.route,
                upstream = t.upstream.as_deref().unwrap_or("-"),
                repo = t.repo.as_deref().unwrap_or("-"),
                cache = t.outcome.map_or("-", Outcome::as_str),
                status = self.status,
                bytes = self.sent,
                complete = finished,
                ms = duration.as_millis() as u64,
                "served"
            );
        });
    }
}
