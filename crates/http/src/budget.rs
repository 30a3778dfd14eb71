//! Budgets for streamed body bytes: one per connection, and one for every
//! connection of a listener together. A streamed response (HTTP/2, or
//! anything `sendfile` cannot send) takes permits from both for the chunk
//! it is about to produce before it asks its source for it, and the chunk
//! carries them until the connection has written it out. So however many
//! streams a client opens without reading, one connection never holds more
//! than its budget in memory, however many connections stop reading they
//! never hold more than the listener's, and a stream that cannot get
//! permits simply waits: no thread, no read.

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

/// Permits for `bytes` (at least one chunk).
fn permits(bytes: u64) -> Arc<Semaphore> {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    Arc::new(Semaphore::new(
        bytes.clamp(PER_CHUNK, Semaphore::MAX_PERMITS),
    ))
}

/// The bytes every connection of a listener may hold for streamed bodies.
#[derive(Debug, Clone)]
pub(crate) struct SharedBudget(Arc<Semaphore>);

impl SharedBudget {
    /// A budget of `bytes` (at least one chunk).
    pub(crate) fn new(bytes: u64) -> Self {
        Self(permits(bytes))
    }

    /// A connection's own budget of `bytes` within this one.
    pub(crate) fn connection(&self, bytes: u64) -> BodyBudget {
        BodyBudget {
            own: permits(bytes),
            shared: Arc::clone(&self.0),
        }
    }
}

/// The bytes a connection may hold for its streamed bodies.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    own: Arc<Semaphore>,
    shared: Arc<Semaphore>,
}

impl BodyBudget {
    /// Bytes not held by any chunk of this connection right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.own.available_permits()
    }

    /// A body that streams `chunks` within this budget.
    pub(crate) fn body(
        &self,
        chunks: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> Body {
        Body::new(BudgetedBody {
            chunks: chunks.boxed(),
            budget: self.clone(),
            waiting: None,
            permit: None,
        })
    }

    /// Wait for one chunk's permits: the connection's first, then the
    /// listener's (so one connection waits on its own budget without
    /// holding any of the shared one).
    async fn chunk(self) -> Option<Permits> {
        let own = self.own.acquire_many_owned(PER_CHUNK as u32).await.ok()?;
        let shared = self
            .shared
            .acquire_many_owned(PER_CHUNK as u32)
            .await
            .ok()?;
        Some(Permits { own, shared })
    }
}

/// One chunk's permits from both budgets.
struct Permits {
    own: OwnedSemaphorePermit,
    shared: OwnedSemaphorePermit,
}

impl Permits {
    /// Keep `n` of each and give the rest back now.
    fn keep(mut self, n: usize) -> Self {
        let n = n.clamp(1, self.own.num_permits().min(self.shared.num_permits()));
        Self {
            own: self.own.split(n).unwrap_or(self.own),
            shared: self.shared.split(n).unwrap_or(self.shared),
        }
    }
}

struct BudgetedBody {
    chunks: BoxStream<'static, io::Result<Bytes>>,
    budget: BodyBudget,
    waiting: Option<BoxFuture<'static, Option<Permits>>>,
    permit: Option<Permits>,
}

/// A chunk that gives its permits back when the last copy of it is gone.
struct Held {
    bytes: Bytes,
    _permits: Permits,
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
            let budget = self.budget.clone();
            let waiting = self.waiting.get_or_insert_with(|| Box::pin(budget.chunk()));
            let permit = ready!(waiting.as_mut().poll(cx));
            self.waiting = None;
            match permit {
                Some(p) => self.permit = Some(p),
                None => return Poll::Ready(Some(Err(io::Error::other("body budget closed")))),
            }
        }
        match ready!(self.chunks.poll_next_unpin(cx)) {
            Some(Ok(bytes)) => {
                let Some(permits) = self.permit.take() else {
                    return Poll::Ready(Some(Err(io::Error::other("body budget lost"))));
                };
                // Keep what the chunk needs; give back the rest now.
                let held = permits.keep(bytes.len());
                let chunk = Bytes::from_owner(Held {
                    bytes,
                    _permits: held,
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

    fn budget(bytes: usize) -> BodyBudget {
        SharedBudget::new(1 << 30).connection(bytes as u64)
    }

    #[tokio::test]
    async fn chunks_hold_the_budget_until_dropped() {
        let budget = budget(3 * PER_CHUNK);
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
        let budget = budget(2 * PER_CHUNK);
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

    #[tokio::test]
    async fn connections_together_stay_within_the_listeners_budget() {
        let shared = SharedBudget::new(3 * PER_CHUNK as u64);
        // Many connections, each with room for several chunks of its own.
        let connections: Vec<BodyBudget> = (0..10)
            .map(|_| shared.connection(4 * PER_CHUNK as u64))
            .collect();
        let mut held = Vec::new();
        for c in &connections[..3] {
            let mut body = c.body(chunks(10, PER_CHUNK));
            held.push(body.frame().await.unwrap().unwrap().into_data().unwrap());
        }
        let mut fourth = connections[3].body(chunks(10, PER_CHUNK));
        let stalled =
            tokio::time::timeout(std::time::Duration::from_millis(50), fourth.frame()).await;
        assert!(
            stalled.is_err(),
            "the listener's budget is used up: the fourth must wait"
        );
        drop(held.pop());
        let next = fourth.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(next.len(), PER_CHUNK);
    }
}
