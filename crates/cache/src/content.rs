//! The bytes of one blob, as every store hands them out: a stored blob on
//! a hit, and the tail of a blob being written while clients wait for it.
//! A [`BlobContent`] reads any stretch at any offset; a local file is only
//! an optional capability ([`BlobContent::local_file`]) that the plain-HTTP
//! path uses for `sendfile`. [`LocalFile`] is the local disk's, and
//! [`MemoryContent`] the memory store's (growing while it is written).

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex, PoisonError};

/// The bytes of one blob, complete or still being written. Whoever reads
/// a blob being written follows its `Progress` and never asks past what
/// was published (see `reader.rs`).
#[async_trait]
pub trait BlobContent: Send + Sync + Debug {
    /// Exactly `len` bytes at `offset`; content that ends first is an
    /// error.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;

    /// The same bytes when they can be had at once, without waiting on a
    /// disk or a network: held in memory, or a small positional read of a
    /// local file. `None`: use [`BlobContent::read_at`].
    fn read_now(&self, offset: u64, len: usize) -> Option<io::Result<Bytes>>;

    /// The local file that holds these bytes at the same offsets, if there
    /// is one: the plain-HTTP path hands it to the kernel (`sendfile`).
    fn local_file(&self) -> Option<&Arc<File>> {
        None
    }

    /// Bytes `start..end` of complete content as one stream, where the
    /// content has a cheaper way than reading it stretch by stretch (a
    /// remote object: one ranged GET). `None`: read it with
    /// [`BlobContent::read_at`].
    fn stream_range(&self, _start: u64, _end: u64) -> Option<crate::ByteStream> {
        None
    }

    /// A short-lived URL a client can fetch the whole content from
    /// directly, where the store hands those out (a bucket with
    /// `redirect` on). `None`: serve the bytes.
    async fn redirect_url(&self) -> Option<String> {
        None
    }
}

/// A blob in a local file: a committed blob, or a spool being written.
/// An unlink does not take an open file's bytes away.
#[derive(Debug, Clone)]
pub struct LocalFile(Arc<File>);

impl LocalFile {
    /// The content of `file`.
    pub fn new(file: Arc<File>) -> Self {
        Self(file)
    }
}

#[async_trait]
impl BlobContent for LocalFile {
    /// Bytes the page cache holds are read right here without blocking
    /// (`RWF_NOWAIT`); the rest on a blocking thread, so a disk wait never
    /// stalls the async workers.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(len);
        let cached = read_cached(&self.0, &mut buf, offset);
        if cached == len {
            return Ok(buf.freeze());
        }
        let file = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            read_exact_at(&file, &mut buf[cached..], offset + cached as u64)?;
            Ok(buf.freeze())
        })
        .await
        .map_err(io::Error::other)?
    }

    fn read_now(&self, offset: u64, len: usize) -> Option<io::Result<Bytes>> {
        let mut buf = BytesMut::zeroed(len);
        Some(read_exact_at(&self.0, &mut buf, offset).map(|()| buf.freeze()))
    }

    fn local_file(&self) -> Option<&Arc<File>> {
        Some(&self.0)
    }
}

/// As many bytes at `offset` as the page cache holds, read without waiting
/// for the disk; 0 when none are cached or the kernel cannot tell.
fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        let mut slices = [io::IoSliceMut::new(&mut buf[filled..])];
        match rustix::io::preadv2(
            file,
            &mut slices,
            offset + filled as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// A positional read that fails if the file ends first.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, "blob file ended early")
        } else {
            e
        }
    })
}

/// A blob in memory: complete, or growing as chunks are appended.
#[derive(Debug, Default)]
pub struct MemoryContent {
    /// The chunks in order, and the offset each starts at.
    chunks: Mutex<Vec<(u64, Bytes)>>,
}

impl MemoryContent {
    /// The content `bytes`, complete.
    pub fn complete(bytes: Bytes) -> Self {
        Self {
            chunks: Mutex::new(vec![(0, bytes)]),
        }
    }

    /// Append `chunks` after what is held.
    pub fn append(&self, chunks: &[Bytes]) {
        let mut held = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut end = held.last().map_or(0, |(at, c)| at + c.len() as u64);
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            held.push((end, chunk.clone()));
            end += chunk.len() as u64;
        }
    }

    /// Bytes held so far.
    pub fn len(&self) -> u64 {
        let held = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        held.last().map_or(0, |(at, c)| at + c.len() as u64)
    }

    /// Whether nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything held, as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let held = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        match &held[..] {
            [] => Bytes::new(),
            [(_, only)] => only.clone(),
            many => {
                let mut all = BytesMut::new();
                for (_, chunk) in many {
                    all.extend_from_slice(chunk);
                }
                all.freeze()
            }
        }
    }

    fn slice(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let held = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        let end = offset + len as u64;
        let first = held.partition_point(|(at, c)| at + c.len() as u64 <= offset);
        let mut out = BytesMut::with_capacity(len);
        let mut single = None;
        for (at, chunk) in held[first..].iter().take_while(|(at, _)| *at < end) {
            let from = (offset.max(*at) - at) as usize;
            let to = (end.min(at + chunk.len() as u64) - at) as usize;
            if out.is_empty() && single.is_none() && to - from == len {
                single = Some(chunk.slice(from..to));
                break;
            }
            out.extend_from_slice(&chunk[from..to]);
        }
        if let Some(whole) = single {
            return Ok(whole);
        }
        if out.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob in memory ended early",
            ));
        }
        Ok(out.freeze())
    }
}

#[async_trait]
impl BlobContent for MemoryContent {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.slice(offset, len)
    }

    fn read_now(&self, offset: u64, len: usize) -> Option<io::Result<Bytes>> {
        Some(self.slice(offset, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_content_reads_across_chunks_and_refuses_past_its_end() {
        let content = MemoryContent::default();
        content.append(&[Bytes::from_static(b"abc"), Bytes::new()]);
        content.append(&[Bytes::from_static(b"defg")]);
        assert_eq!(content.len(), 7);
        assert_eq!(&content.read_at(0, 7).await.unwrap()[..], b"abcdefg");
        assert_eq!(&content.read_at(2, 3).await.unwrap()[..], b"cde");
        assert_eq!(&content.read_at(3, 4).await.unwrap()[..], b"defg");
        assert_eq!(&content.read_at(4, 0).await.unwrap()[..], b"");
        assert!(content.read_at(5, 3).await.is_err());
        assert_eq!(&content.to_bytes()[..], b"abcdefg");
    }

    #[tokio::test]
    async fn a_local_file_reads_in_place_or_on_a_thread_and_is_offered_for_sendfile() {
        use std::io::Write as _;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"0123456789").unwrap();
        let content = LocalFile::new(Arc::new(File::open(f.path()).unwrap()));
        assert_eq!(&content.read_at(3, 4).await.unwrap()[..], b"3456");
        assert_eq!(&content.read_now(8, 2).unwrap().unwrap()[..], b"89");
        assert!(
            content.read_at(8, 4).await.is_err(),
            "a short file is an error"
        );
        assert!(content.local_file().is_some());
    }
}
