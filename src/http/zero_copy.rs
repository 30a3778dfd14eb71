//! Zero-copy blob bodies on plain HTTP/1 connections: the bytes of a cached
//! (or filling) blob go from the page cache to the socket with `sendfile`,
//! never through user space.
//!
//! hyper writes every body through its own buffers, so the body and the
//! connection agree on a stand-in. The body yields a slice of [`STAND_IN`]
//! (a zero-filled static that nothing ever reads) and, at the same moment,
//! loads the matching file stretch into the connection's [`Outbox`]. hyper
//! queues that slice as it is, and when it reaches the socket,
//! [`ZeroCopyConn`] recognises the slice by its address and sends the file
//! stretch in its place. One stretch is outstanding per connection: the
//! next is loaded only when the last byte of the previous one is on the
//! socket. A stand-in slice that does not match the loaded stretch closes
//! the connection; stand-in bytes are never sent.
//!
//! This relies on hyper 1 queuing body chunks uncopied when the connection
//! writes vectored (its `writev` strategy, which it picks because
//! [`ZeroCopyConn`] says it is vectored). `tests/zero_copy.rs` checks the
//! bytes by digest, so a hyper upgrade that changed this fails there.
//!
//! HTTP/2 frames and may copy body chunks, so only HTTP/1 requests on a
//! [`ZeroCopyConn`] get these bodies; every other response streams chunks.

use crate::pull::FileSpan;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Largest stretch handed to the kernel per body frame.
const STRETCH: usize = 8 << 20;

/// The stand-in bytes. Zero-initialised, so it lives in `.bss` and costs
/// no memory: nothing reads it.
static STAND_IN: [u8; STRETCH] = [0; STRETCH];

/// Offset of `slice` inside [`STAND_IN`], if it points there.
fn stand_in_offset(slice: &[u8]) -> Option<usize> {
    let base = STAND_IN.as_ptr() as usize;
    let at = slice.as_ptr() as usize;
    (at >= base && at < base + STRETCH).then(|| at - base)
}

/// A file stretch waiting to be sent in place of stand-in bytes.
#[derive(Debug)]
struct Stretch {
    file: Arc<std::fs::File>,
    offset: u64,
    len: usize,
}

#[derive(Debug, Default)]
struct OutboxState {
    loaded: Option<Stretch>,
    waiting: Option<Waker>,
}

/// Per connection: the file stretch the next stand-in bytes stand for.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ready once no stretch is outstanding.
    fn poll_empty(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.loaded.is_none() {
            return Poll::Ready(());
        }
        state.waiting = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Load a stretch and return the stand-in bytes that represent it.
    fn load(&self, stretch: Stretch) -> Bytes {
        let len = stretch.len;
        self.lock().loaded = Some(stretch);
        Bytes::from_static(&STAND_IN[..len])
    }

    /// The file and offset for stand-in bytes at `skip..skip + len`.
    fn source(&self, skip: usize, len: usize) -> io::Result<(Arc<std::fs::File>, u64)> {
        match &self.lock().loaded {
            Some(s) if skip + len <= s.len => Ok((Arc::clone(&s.file), s.offset + skip as u64)),
            _ => Err(io::Error::other(
                "zero-copy body out of step with its connection; closing it",
            )),
        }
    }

    /// Bytes up to `through` of the loaded stretch are on the socket.
    fn sent_through(&self, through: usize) {
        let mut state = self.lock();
        if state.loaded.as_ref().is_some_and(|s| through >= s.len) {
            state.loaded = None;
            if let Some(w) = state.waiting.take() {
                w.wake();
            }
        }
    }
}

/// A response body that sends `span` from the file with `sendfile`,
/// counting the bytes in `sent`.
pub(crate) fn body(span: FileSpan, outbox: Arc<Outbox>, sent: Counter) -> Body {
    let frames = futures_util::stream::unfold(Some((span, outbox)), move |state| {
        let sent = sent.clone();
        async move {
            let (mut span, outbox) = state?;
            match span.next_readable(STRETCH as u64).await {
                Ok(Some((offset, len))) => {
                    std::future::poll_fn(|cx| outbox.poll_empty(cx)).await;
                    let stand_in = outbox.load(Stretch {
                        file: Arc::clone(&span.file),
                        offset,
                        len: len as usize,
                    });
                    sent.inc_by(len);
                    Some((Ok(stand_in), Some((span, outbox))))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    Body::from_stream(frames)
}

/// A TCP connection that sends stand-in slices as file bytes.
#[derive(Debug)]
pub(crate) struct ZeroCopyConn {
    tcp: TcpStream,
    outbox: Arc<Outbox>,
}

impl ZeroCopyConn {
    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        skip: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let (file, offset) = self.outbox.source(skip, len)?;
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                let mut at = offset;
                rustix::fs::sendfile(&self.tcp, &*file, Some(&mut at), len).map_err(io::Error::from)
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob file ended before the length announced",
                    )));
                }
                Ok(n) => {
                    self.outbox.sent_through(skip + n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for ZeroCopyConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Plain bytes up to the first stand-in go out with writev; a
        // stand-in at the front goes out with sendfile.
        match bufs.iter().position(|b| stand_in_offset(b).is_some()) {
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
            Some(0) => {
                let skip = stand_in_offset(&bufs[0]).unwrap_or_default();
                self.poll_send_file(cx, skip, bufs[0].len())
            }
            Some(first) => Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..first]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper queues body chunks without copying only for vectored IO.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Accepts TCP connections as [`ZeroCopyConn`]s with `TCP_NODELAY` set.
#[derive(Debug)]
pub(crate) struct ZeroCopyListener {
    inner: TcpListener,
}

impl ZeroCopyListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for ZeroCopyListener {
    type Io = ZeroCopyConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.inner).await;
        // Headers and the first body bytes go out as separate writes:
        // without TCP_NODELAY, Nagle and delayed ACKs stall them ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let conn = ZeroCopyConn {
            tcp,
            outbox: Arc::default(),
        };
        (conn, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The connection's outbox, given to each of its requests (as axum
/// `ConnectInfo`).
#[derive(Debug, Clone)]
pub(crate) struct ConnOutbox(Arc<Outbox>);

impl ConnOutbox {
    pub(crate) fn outbox(&self) -> Arc<Outbox> {
        Arc::clone(&self.0)
    }
}

impl Connected<IncomingStream<'_, ZeroCopyListener>> for ConnOutbox {
    fn connect_info(stream: IncomingStream<'_, ZeroCopyListener>) -> Self {
        Self(Arc::clone(&stream.io().outbox))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stand_in_slices_are_recognised() {
        assert_eq!(stand_in_offset(&STAND_IN[..10]), Some(0));
        assert_eq!(stand_in_offset(&STAND_IN[100..200]), Some(100));
        let zeros = vec![0u8; 64];
        assert_eq!(stand_in_offset(&zeros), None);
        assert_eq!(stand_in_offset(b"GET / HTTP/1.1"), None);
    }

    #[test]
    fn a_stretch_is_released_only_when_fully_sent() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let outbox = Outbox::default();
        let bytes = outbox.load(Stretch {
            file,
            offset: 5,
            len: 100,
        });
        assert_eq!(stand_in_offset(&bytes), Some(0));
        assert_eq!(outbox.source(10, 90).unwrap().1, 15);
        assert!(outbox.source(10, 91).is_err());
        outbox.sent_through(60);
        assert!(outbox.lock().loaded.is_some());
        outbox.sent_through(100);
        assert!(outbox.lock().loaded.is_none());
        assert!(outbox.source(0, 1).is_err(), "nothing loaded: refuse");
    }
}
