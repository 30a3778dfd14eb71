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
//! the connection; stand-in bytes are never sent. So does a plain write
//! while a stretch is loaded (a writer that copied the stand-in into its
//! own buffer), and a body dropped before its end clears its stretch.
//! Bytes are counted when `sendfile` sends them.
//!
//! This relies on hyper 1 queuing body chunks uncopied when the connection
//! writes vectored (its `writev` strategy, which it picks because
//! [`ZeroCopyConn`] says it is vectored). `tests/zero_copy.rs` checks the
//! bytes by digest, so a hyper upgrade that changed this fails there.
//!
//! HTTP/2 frames and may copy body chunks, so only HTTP/1 requests on a
//! [`ZeroCopyConn`] get these bodies; every other response streams chunks.

use axum::body::Body;
use berth_cache::Span;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use http_body::Frame;
use prometheus_client::metrics::counter::Counter;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Largest stretch per body frame, and so per `sendfile` call: a page-cache
/// miss blocks the calling worker for at most this much disk reading, and
/// the next stretch is warmed off the executor while this one is sent.
const STRETCH: usize = 2 << 20;

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
    /// The connection has been asked to write the loaded stretch's
    /// stand-in (it may still be waiting for the socket).
    presented: bool,
    /// A body was cut short, or the stand-in went astray: the connection
    /// must not write another byte.
    poisoned: bool,
    waiting: Option<Waker>,
}

/// How long a loaded stretch may wait for the connection to be asked to
/// write its stand-in. With vectored writes hyper asks at once; a writer
/// that copied the stand-in never asks, and would otherwise wait forever.
const PRESENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Per connection: the file stretch the next stand-in bytes stand for, and
/// the counter of bytes that went out with `sendfile`.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    sent: Counter,
}

impl Outbox {
    /// An outbox counting what it sends in `sent`.
    pub(crate) fn new(sent: Counter) -> Self {
        Self {
            state: Mutex::default(),
            sent,
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ready once no stretch is outstanding; an error once poisoned.
    fn poll_empty(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        if state.poisoned {
            return Poll::Ready(Err(out_of_step()));
        }
        if state.loaded.is_none() {
            return Poll::Ready(Ok(()));
        }
        state.waiting = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Wait until no stretch is outstanding. A stretch whose stand-in the
    /// connection is never asked to write poisons the connection.
    async fn empty(&self) -> io::Result<()> {
        loop {
            let wait = std::future::poll_fn(|cx| self.poll_empty(cx));
            match tokio::time::timeout(PRESENT_LIMIT, wait).await {
                Ok(done) => return done,
                Err(_) if !self.lock().presented => {
                    self.poison();
                    return Err(out_of_step());
                }
                Err(_) => {}
            }
        }
    }

    /// Refuse plain writes while a stretch is loaded, and every write once
    /// poisoned.
    fn check_plain_write(&self) -> io::Result<()> {
        let state = self.lock();
        if state.poisoned || state.loaded.is_some() {
            return Err(out_of_step());
        }
        Ok(())
    }

    fn is_poisoned(&self) -> bool {
        self.lock().poisoned
    }

    /// The connection was asked to write stand-in bytes.
    fn present(&self) -> io::Result<()> {
        let mut state = self.lock();
        if state.poisoned {
            return Err(out_of_step());
        }
        state.presented = true;
        Ok(())
    }

    /// Load a stretch and return the stand-in bytes that represent it.
    fn load(&self, stretch: Stretch) -> Bytes {
        let len = stretch.len;
        let mut state = self.lock();
        state.loaded = Some(stretch);
        state.presented = false;
        Bytes::from_static(&STAND_IN[..len])
    }

    /// No byte more on this connection: a body was cut short or its
    /// stand-in went astray, so what is queued behind it cannot be right.
    fn poison(&self) {
        let mut state = self.lock();
        state.poisoned = true;
        state.loaded = None;
        if let Some(w) = state.waiting.take() {
            w.wake();
        }
    }

    /// The file and offset for stand-in bytes at `skip..skip + len`.
    fn source(&self, skip: usize, len: usize) -> io::Result<(Arc<std::fs::File>, u64)> {
        match &self.lock().loaded {
            Some(s) if skip + len <= s.len => Ok((Arc::clone(&s.file), s.offset + skip as u64)),
            _ => Err(out_of_step()),
        }
    }

    /// `n` bytes, ending at `through` of the loaded stretch, are on the
    /// socket.
    fn sent(&self, n: usize, through: usize) {
        self.sent.inc_by(n as u64);
        let mut state = self.lock();
        if state.loaded.as_ref().is_some_and(|s| through >= s.len) {
            state.loaded = None;
            if let Some(w) = state.waiting.take() {
                w.wake();
            }
        }
    }
}

fn out_of_step() -> io::Error {
    io::Error::other("zero-copy body out of step with its connection; closing it")
}

/// A response body that sends `span` from its local file with `sendfile`
/// (the caller checked that it has one).
pub(crate) fn body(span: Span, outbox: Arc<Outbox>) -> Body {
    let Some(file) = span.local_file().cloned() else {
        return Body::from_stream(span.into_stream());
    };
    warm(&file, span.position(), STRETCH);
    let frames =
        futures_util::stream::unfold(Some((span, file, Arc::clone(&outbox))), |state| async {
            let (mut span, file, outbox) = state?;
            match span.next_readable(STRETCH as u64).await {
                Ok(Some((offset, len))) => {
                    if let Err(e) = outbox.empty().await {
                        return Some((Err(e), None));
                    }
                    warm(&file, offset + len, STRETCH);
                    let stand_in = outbox.load(Stretch {
                        file: Arc::clone(&file),
                        offset,
                        len: len as usize,
                    });
                    let last = span.exhausted();
                    Some((Ok((stand_in, last)), Some((span, file, outbox))))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
    Body::new(ZeroCopyBody {
        frames: frames.boxed(),
        outbox,
        finished: false,
    })
}

/// Ask the kernel to read `len` bytes at `offset` into the page cache, on
/// a blocking thread, so the `sendfile` that follows finds them there.
fn warm(file: &Arc<std::fs::File>, offset: u64, len: usize) {
    let file = Arc::clone(file);
    let len = std::num::NonZeroU64::new(len as u64);
    drop(tokio::task::spawn_blocking(move || {
        let _ = rustix::fs::fadvise(&*file, offset, len, rustix::fs::Advice::WillNeed);
    }));
}

/// The frames of a zero-copy body, each with whether it is the last.
/// Dropped before its last frame was taken (the response was cut short),
/// it poisons the connection's outbox: the connection cannot carry a
/// correct response any more, and stand-in bytes it handed out must never
/// be sent. hyper drops a body of known length once it
/// has its last byte, while that byte may still be queued: that is not
/// cut short.
struct ZeroCopyBody {
    frames: BoxStream<'static, io::Result<(Bytes, bool)>>,
    outbox: Arc<Outbox>,
    finished: bool,
}

impl http_body::Body for ZeroCopyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match ready!(self.frames.poll_next_unpin(cx)) {
            Some(Ok((bytes, last))) => {
                self.finished = last;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                self.finished = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for ZeroCopyBody {
    fn drop(&mut self) {
        if !self.finished {
            self.outbox.poison();
        }
    }
}

/// A connected socket that `sendfile` can write to.
pub(crate) trait Socket: AsyncRead + AsyncWrite + AsFd + Unpin + Send + 'static {
    /// Ready when the socket may take more bytes.
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Run a non-blocking write, clearing readiness on `WouldBlock`.
    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize>;
}

impl Socket for TcpStream {
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }
    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, f)
    }
}

impl Socket for UnixStream {
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }
    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, f)
    }
}

/// A connection that sends stand-in slices as file bytes.
///
/// It fails closed: stand-in bytes with no matching stretch loaded, or a
/// plain (non-vectored) write while a stretch is loaded, which is what a
/// write strategy that copied the stand-in into its own buffer looks like,
/// close the connection instead of sending anything.
#[derive(Debug)]
pub(crate) struct ZeroCopyConn<S = TcpStream> {
    socket: S,
    outbox: Arc<Outbox>,
}

impl<S: Socket> ZeroCopyConn<S> {
    /// Wrap a connected socket; its responses load stretches into `outbox`.
    pub(crate) fn new(socket: S, outbox: Arc<Outbox>) -> Self {
        Self { socket, outbox }
    }

    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        skip: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let (file, offset) = self.outbox.source(skip, len)?;
        loop {
            ready!(self.socket.poll_writable(cx))?;
            let sent = self.socket.try_write_with(&mut || {
                let mut at = offset;
                rustix::fs::sendfile(&self.socket, &*file, Some(&mut at), len)
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob file ended before the length announced",
                    )));
                }
                Ok(n) => {
                    self.outbox.sent(n, skip + n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<S: Socket> AsyncRead for ZeroCopyConn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for ZeroCopyConn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match stand_in_offset(buf) {
            Some(skip) => {
                self.outbox.present()?;
                self.poll_send_file(cx, skip, buf.len())
            }
            None => {
                // Plain bytes while a stretch is loaded: a writer that copied
                // the stand-in in with them.
                self.outbox.check_plain_write()?;
                Pin::new(&mut self.socket).poll_write(cx, buf)
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Plain bytes up to the first stand-in go out with writev; a
        // stand-in at the front goes out with sendfile.
        let first = bufs.iter().position(|b| stand_in_offset(b).is_some());
        if first.is_some() {
            self.outbox.present()?;
        }
        match first {
            None => {
                if self.outbox.is_poisoned() {
                    return Poll::Ready(Err(out_of_step()));
                }
                Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
            }
            Some(0) => {
                let skip = stand_in_offset(&bufs[0]).unwrap_or_default();
                self.poll_send_file(cx, skip, bufs[0].len())
            }
            Some(first) => Pin::new(&mut self.socket).poll_write_vectored(cx, &bufs[..first]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper queues body chunks without copying only for vectored IO.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
