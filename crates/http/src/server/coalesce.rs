//! Gathering HTTP/2's writes on a TLS connection. h2 writes one frame at a
//! time (16 KiB of data behind a 9-byte header) and flushes after each,
//! which under TLS makes a full record, a 9-byte record and a system call
//! per 16 KiB. [`Coalesce`] keeps what h2 writes until it holds
//! [`FLUSH_AT`] bytes, or until a flush comes that no write preceded since
//! the last one: h2 flushes again whenever its connection runs with nothing
//! left to send, and the first deferred flush wakes it so that happens at
//! once. What goes to TLS then leaves as full records, in few writes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are written on.
pub(super) const FLUSH_AT: usize = 64 << 10;

/// A writer that gathers small writes until [`FLUSH_AT`] or an idle flush.
#[derive(Debug)]
pub(super) struct Coalesce<T> {
    inner: T,
    buf: Vec<u8>,
    /// Bytes of `buf` already written on.
    sent: usize,
    /// A flush was put off, and nothing was written since.
    deferred: bool,
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    pub(super) fn new(inner: T) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
            deferred: false,
        }
    }

    /// Write everything gathered on to the inner writer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= FLUSH_AT {
            ready!(this.poll_drain(cx))?;
        }
        this.deferred = false;
        let room = FLUSH_AT.saturating_sub(this.buf.len()).max(1);
        let mut taken = 0;
        for slice in bufs {
            let part = &slice[..slice.len().min(room - taken)];
            this.buf.extend_from_slice(part);
            taken += part.len();
            if taken == room {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() && this.buf.len() < FLUSH_AT && !this.deferred {
            // More may follow in this run of the connection: put the flush
            // off, and make sure the connection runs again to make it.
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        this.deferred = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{Coalesce, FLUSH_AT};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn small_writes_leave_together_and_a_second_flush_sends_them() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesce::new(client);
        writer.write_all(&[1; 100]).await.unwrap();
        writer.flush().await.unwrap();
        writer.write_all(&[2; 100]).await.unwrap();
        writer.flush().await.unwrap();
        let mut got = [0u8; 200];
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            server.read_exact(&mut got[..1]),
        )
        .await;
        assert!(early.is_err(), "sent before an idle flush");
        writer.flush().await.unwrap();
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got[..100], [1; 100]);
        assert_eq!(got[100..], [2; 100]);

        // A full buffer goes on at the next write, flushed or not.
        writer.write_all(&vec![3; FLUSH_AT + 10]).await.unwrap();
        let mut first = vec![0u8; FLUSH_AT];
        server.read_exact(&mut first).await.unwrap();
        assert!(first.iter().all(|b| *b == 3));
        writer.shutdown().await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, [3; 10]);
    }
}
