//! A per-connection budget for streamed body bytes. A streamed response
//! (HTTP/2, or anything `sendfile` cannot send) takes permits for the
//! chunk it is about to produce before it asks its source for it, and the
//! chunk carries them until the connection has written it out. So however
//! many streams a client opens without reading, one connection never holds
//! more than its budget in memory, and a stream that cannot get permits
//! simply waits: no thread, no read.

use axum::body::Body;
use bytes::Bytes;
use futures_util::Stream;
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use http_body::Frame;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits taken before each chunk: the largest chunk a cached file's
/// stream reads at once.
const PER_CHUNK: usize = 256 << 10;

/// The bytes a connection may hold for its streamed bodies.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    /// A budget of `bytes` (at least one chunk).
    pub(crate) fn new(bytes: u64) -> Self {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        Self(Arc::new(Semaphore::new(
            bytes.clamp(PER_CHUNK, Semaphore::MAX_PERMITS),
        )))
    }

    /// Bytes not held by any chunk right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.0.available_permits()
    }

    /// A body that streams `chunks` within this budget.
    pub(crate) fn body(
        &self,
        chunks: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> Body {
        Body::new(BudgetedBody {
            chunks: chunks.boxed(),
            budget: Arc::clone(&self.0),
            waiting: None,
            permit: None,
        })
    }
}

struct BudgetedBody {
    chunks: BoxStream<'static, io::Result<Bytes>>,
    budget: Arc<Semaphore>,
    waiting: Option<BoxFuture<'static, Option<OwnedSemaphorePermit>>>,
    permit: Option<OwnedSemaphorePermit>,
}

/// A chunk that gives its permits back when the last copy of it is gone.
struct Held {
    bytes: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl http_body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.permit.is_none() {
            let budget = Arc::clone(&self.budget);
            let waiting = self.waiting.get_or_insert_with(|| {
                Box::pin(async move { budget.acquire_many_owned(PER_CHUNK as u32).await.ok() })
            });
            let permit = ready!(waiting.as_mut().poll(cx));
            self.waiting = None;
            match permit {
                Some(p) => self.permit = Some(p),
                None => return Poll::Ready(Some(Err(io::Error::other("body budget closed")))),
            }
        }
        match ready!(self.chunks.poll_next_unpin(cx)) {
            Some(Ok(bytes)) => {
                let Some(mut permit) = self.permit.take() else {
                    return Poll::Ready(Some(Err(io::Error::other("body budget lost"))));
                };
                // Keep what the chunk needs; give back the rest now.
                let keep = bytes.len().clamp(1, permit.num_permits());
                let held = permit.split(keep).unwrap_or(permit);
                let chunk = Bytes::from_owner(Held {
                    bytes,
                    _permit: held,
                });
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                self.permit = None;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn chunks(n: usize, len: usize) -> impl Stream<Item = io::Result<Bytes>> + Send {
        futures_util::stream::iter((0..n).map(move |i| Ok(Bytes::from(vec![i as u8; len]))))
    }

    #[tokio::test]
    async fn chunks_hold_the_budget_until_dropped() {
        let budget = BodyBudget::new(3 * PER_CHUNK as u64);
        let mut a = budget.body(chunks(4, 1000));
        let first = a.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), 1000);
        assert_eq!(
            budget.available(),
            3 * PER_CHUNK - 1000,
            "only the chunk is held"
        );
        drop(first);
        assert_eq!(budget.available(), 3 * PER_CHUNK);
    }

    #[tokio::test]
    async fn a_stream_waits_while_unread_chunks_use_the_whole_budget() {
        let budget = BodyBudget::new(2 * PER_CHUNK as u64);
        let mut held = Vec::new();
        let mut a = budget.body(chunks(10, PER_CHUNK));
        held.push(a.frame().await.unwrap().unwrap().into_data().unwrap());
        let mut b = budget.body(chunks(10, PER_CHUNK));
        held.push(b.frame().await.unwrap().unwrap().into_data().unwrap());
        let mut c = budget.body(chunks(10, PER_CHUNK));
        let stalled = tokio::time::timeout(std::time::Duration::from_millis(50), c.frame()).await;
        assert!(
            stalled.is_err(),
            "no budget left: the third stream must wait"
        );
        held.pop();
        let next = c.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(next.len(), PER_CHUNK);
    }
}
