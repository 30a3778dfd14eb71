//! Reading a byte range of a blob, complete or still being written, from
//! whatever store holds it: a [`Span`] hands out the stretches that may be
//! sent (for `sendfile` where the content is a local file, or a read), and
//! [`Span::into_stream`] reads them chunk by chunk as its consumer polls,
//! never ahead of it. Both follow one rule for a blob still being written:
//! they track its [`Progress`] channel, never go past what the writer has
//! published, and hold back the last byte of the range until the writer
//! reports the blob complete and verified. A client can therefore never
//! receive a whole body that later fails verification.

use crate::{BlobContent, ByteStream};
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::sync::Arc;
use tokio::sync::watch;

/// Largest chunk a stream reads at once.
const CHUNK: u64 = 256 << 10;

/// Where a blob being written stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Bytes are still arriving.
    Filling,
    /// Every byte is written and the digest matched.
    Complete,
    /// The download broke off or failed verification.
    Failed,
}

/// Published by the writer of a blob after each write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes written and readable so far.
    pub written: u64,
    /// Whether more will come.
    pub state: ProgressState,
}

/// A byte range of a blob to send: a stored blob, or the tail of one
/// still being written. Consumers either turn it into a stream of chunks
/// ([`Span::into_stream`]) or ask it for the next readable stretch and
/// move those bytes themselves ([`Span::next_readable`]), e.g. with
/// `sendfile` from [`Span::local_file`].
#[derive(Debug)]
pub struct Span {
    /// The blob's bytes; shared with the writer while it is being filled.
    content: Arc<dyn BlobContent>,
    pos: u64,
    end: Option<u64>,
    progress: Option<watch::Receiver<Progress>>,
}

impl Span {
    /// Bytes `start..end` of a complete blob.
    pub fn complete(content: Arc<dyn BlobContent>, start: u64, end: u64) -> Self {
        Self {
            content,
            pos: start,
            end: Some(end),
            progress: None,
        }
    }

    /// Bytes `start..end` of a blob still being written, following
    /// `progress`; `end = None` means "until the writer completes".
    pub fn filling(
        content: Arc<dyn BlobContent>,
        start: u64,
        end: Option<u64>,
        progress: watch::Receiver<Progress>,
    ) -> Self {
        Self {
            content,
            pos: start,
            end,
            progress: Some(progress),
        }
    }

    /// The local file holding the blob, where there is one (for
    /// `sendfile`); offsets in it are the blob's.
    pub fn local_file(&self) -> Option<&Arc<File>> {
        self.content.local_file()
    }

    /// The offset of the next byte the span hands out.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Whether every byte of a span with a known end was handed out.
    pub fn exhausted(&self) -> bool {
        self.end.is_some_and(|end| self.pos >= end)
    }

    /// Bytes left in the span, if the blob is complete.
    pub fn complete_len(&self) -> Option<u64> {
        match (&self.progress, self.end) {
            (None, Some(end)) => Some(end.saturating_sub(self.pos)),
            _ => None,
        }
    }

    /// Read a complete span right here, for small spans where one read in
    /// place beats handing the work to another thread or to `sendfile`.
    /// `None` for a span still filling, or content that cannot be read
    /// without waiting.
    pub(crate) fn read_now(&self) -> Option<io::Result<Bytes>> {
        let len = self.complete_len()?;
        self.content
            .read_now(self.pos, usize::try_from(len).unwrap_or(usize::MAX))
    }

    /// Stream the span in chunks read as the stream is polled.
    ///
    /// Nothing happens between polls: each chunk is read only when the
    /// stream is polled for it, so a client that stops reading holds no
    /// thread and no more than the chunk it was last given.
    pub fn into_stream(self) -> ByteStream {
        if let (None, Some(end)) = (&self.progress, self.end)
            && let Some(stream) = self.content.stream_range(self.pos, end)
        {
            return stream;
        }
        Box::pin(futures_util::stream::try_unfold(
            self,
            |mut span| async move {
                let Some((offset, len)) = span.next_readable(CHUNK).await? else {
                    return Ok(None);
                };
                let chunk = span.content.read_at(offset, len as usize).await?;
                Ok(Some((chunk, span)))
            },
        ))
    }

    /// The next stretch that may be sent, as (file offset, length) with the
    /// length at most `max`; the span counts it as consumed. Waits while
    /// the writer has published nothing new, holds back the last byte until
    /// the blob is verified, and returns `None` at the end of the span.
    pub async fn next_readable(&mut self, max: u64) -> io::Result<Option<(u64, u64)>> {
        loop {
            let progress = current(&mut self.progress, self.end);
            match limit(progress, self.pos, self.end)? {
                Limit::Done => return Ok(None),
                Limit::Upto(limit) if self.pos < limit => {
                    let start = self.pos;
                    let len = (limit - start).min(max);
                    self.pos += len;
                    return Ok(Some((start, len)));
                }
                Limit::Upto(_) => {
                    let Some(rx) = &mut self.progress else {
                        return Err(stopped());
                    };
                    if rx.changed().await.is_err() && rx.borrow().state != ProgressState::Complete {
                        return Err(stopped());
                    }
                }
            }
        }
    }
}

/// How far a reader at `pos` may go now.
enum Limit {
    /// The range is fully read.
    Done,
    /// Bytes before this offset may be read (maybe none yet).
    Upto(u64),
}

/// The writer's last word, or "complete" for a file not being written.
fn current(progress: &mut Option<watch::Receiver<Progress>>, end: Option<u64>) -> Progress {
    match progress {
        None => Progress {
            written: end.unwrap_or(0),
            state: ProgressState::Complete,
        },
        Some(rx) => *rx.borrow_and_update(),
    }
}

/// The one rule every reader follows: never past what is written, never the
/// last byte of the range before the blob is verified, nothing after a
/// failure.
fn limit(p: Progress, pos: u64, end: Option<u64>) -> io::Result<Limit> {
    match p.state {
        ProgressState::Failed => Err(io::Error::other(
            "upstream download failed; response aborted",
        )),
        ProgressState::Complete => {
            let end = end.unwrap_or(p.written);
            if pos >= end {
                Ok(Limit::Done)
            } else if p.written < end {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "cached blob is shorter than expected",
                ))
            } else {
                Ok(Limit::Upto(end))
            }
        }
        ProgressState::Filling => Ok(Limit::Upto(
            p.written
                .saturating_sub(1)
                .min(end.map_or(u64::MAX, |e| e.saturating_sub(1))),
        )),
    }
}

fn stopped() -> io::Error {
    io::Error::other("upstream download stopped; response aborted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    fn stream_file(
        file: Arc<File>,
        start: u64,
        end: Option<u64>,
        progress: Option<watch::Receiver<Progress>>,
    ) -> ByteStream {
        let content = Arc::new(crate::LocalFile::new(file));
        match progress {
            None => Span::complete(content, start, end.unwrap()).into_stream(),
            Some(rx) => Span::filling(content, start, end, rx).into_stream(),
        }
    }

    fn local(file: &Arc<File>) -> Arc<dyn BlobContent> {
        Arc::new(crate::LocalFile::new(Arc::clone(file)))
    }

    async fn collect(mut s: ByteStream) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return (out, false),
            }
        }
        (out, true)
    }

    fn temp_file(data: &[u8]) -> (tempfile::NamedTempFile, Arc<File>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        let reader = Arc::new(File::open(f.path()).unwrap());
        (f, reader)
    }

    #[tokio::test]
    async fn reads_ranges_of_complete_files() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (_f, file) = temp_file(&data);
        let (all, ok) = collect(stream_file(file.clone(), 0, Some(data.len() as u64), None)).await;
        assert!(ok);
        assert_eq!(all, data);
        let (part, ok) = collect(stream_file(file, 10, Some(2_000_000), None)).await;
        assert!(ok);
        assert_eq!(part, &data[10..2_000_000]);
    }

    #[tokio::test]
    async fn tails_a_growing_file_and_holds_back_the_last_byte() {
        let mut w = tempfile::NamedTempFile::new().unwrap();
        let file = Arc::new(File::open(w.path()).unwrap());
        let (tx, rx) = watch::channel(Progress {
            written: 0,
            state: ProgressState::Filling,
        });
        let mut stream = stream_file(file, 0, Some(6), Some(rx));
        w.write_all(b"abc").unwrap();
        tx.send(Progress {
            written: 3,
            state: ProgressState::Filling,
        })
        .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"ab");
        w.write_all(b"def").unwrap();
        tx.send(Progress {
            written: 6,
            state: ProgressState::Filling,
        })
        .unwrap();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"cde");
        tx.send(Progress {
            written: 6,
            state: ProgressState::Complete,
        })
        .unwrap();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"f");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_failed_fill_aborts_without_the_last_byte() {
        let (_f, file) = temp_file(b"wrong!");
        let (tx, rx) = watch::channel(Progress {
            written: 6,
            state: ProgressState::Filling,
        });
        let stream = stream_file(file, 0, Some(6), Some(rx));
        let reader = tokio::spawn(collect(stream));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tx.send(Progress {
            written: 6,
            state: ProgressState::Failed,
        })
        .unwrap();
        let (got, ok) = reader.await.unwrap();
        assert!(!ok);
        assert_eq!(got, b"wrong");
    }

    #[tokio::test]
    async fn spans_of_complete_files_come_in_stretches() {
        let (_f, file) = temp_file(&[7u8; 10]);
        let mut span = Span::complete(local(&file), 2, 10);
        assert_eq!(span.next_readable(5).await.unwrap(), Some((2, 5)));
        assert_eq!(span.next_readable(5).await.unwrap(), Some((7, 3)));
        assert_eq!(span.next_readable(5).await.unwrap(), None);
    }

    #[tokio::test]
    async fn spans_of_filling_files_wait_and_hold_back_the_last_byte() {
        let (_f, file) = temp_file(b"abcdef");
        let (tx, rx) = watch::channel(Progress {
            written: 3,
            state: ProgressState::Filling,
        });
        let mut span = Span::filling(local(&file), 0, None, rx);
        assert_eq!(span.next_readable(100).await.unwrap(), Some((0, 2)));
        let next = tokio::spawn(async move {
            let got = span.next_readable(100).await.unwrap();
            (got, span)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!next.is_finished(), "nothing new is readable yet");
        tx.send(Progress {
            written: 6,
            state: ProgressState::Complete,
        })
        .unwrap();
        let (got, mut span) = next.await.unwrap();
        assert_eq!(got, Some((2, 4)));
        assert_eq!(span.next_readable(100).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_failed_fill_ends_a_span_with_an_error() {
        let (_f, file) = temp_file(b"abcdef");
        let (tx, rx) = watch::channel(Progress {
            written: 6,
            state: ProgressState::Filling,
        });
        let mut span = Span::filling(local(&file), 0, Some(6), rx);
        assert_eq!(span.next_readable(100).await.unwrap(), Some((0, 5)));
        tx.send(Progress {
            written: 6,
            state: ProgressState::Failed,
        })
        .unwrap();
        assert!(span.next_readable(100).await.is_err());
        drop(tx);
    }

    #[tokio::test]
    async fn small_complete_spans_are_read_in_place() {
        let (_f, file) = temp_file(b"0123456789");
        let span = Span::complete(local(&file), 3, 7);
        assert_eq!(span.complete_len(), Some(4));
        assert_eq!(&span.read_now().unwrap().unwrap()[..], b"3456");
        let beyond = Span::complete(local(&file), 8, 12);
        assert!(
            beyond.read_now().unwrap().is_err(),
            "a short file is an error"
        );
        let (_tx, rx) = watch::channel(Progress {
            written: 10,
            state: ProgressState::Filling,
        });
        let filling = Span::filling(local(&file), 0, Some(10), rx);
        assert_eq!(filling.complete_len(), None);
        assert!(filling.read_now().is_none());
    }
}
