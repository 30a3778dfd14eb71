//! The zero-copy contract: over a real socket pair, hyper with every
//! write strategy either sends the file's exact bytes or closes the
//! connection; stand-in zeros never reach the client, and a connection
//! never hangs.

use super::*;
use std::time::Duration;

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
    outbox.sent(60, 60);
    assert!(outbox.lock().loaded.is_some());
    outbox.sent(40, 100);
    assert!(outbox.lock().loaded.is_none());
    assert!(outbox.source(0, 1).is_err(), "nothing loaded: refuse");
}

/// How hyper is set up to write for one run.
#[derive(Debug, Clone, Copy)]
enum Strategy {
    /// `writev(true)`: what berth's server sets.
    Queue,
    /// `writev(false)`: hyper copies body chunks into one buffer.
    Flatten,
    /// `pipeline_flush(true)`, which also flattens.
    PipelineFlush,
    /// hyper's own choice, behind a wrapper that hides vectored writes.
    HiddenVectored,
}

/// An IO wrapper that does not forward vectored writes, as a careless TLS
/// or metering layer might.
struct Devectored<T>(T);

impl<T: AsyncRead + Unpin> AsyncRead for Devectored<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Devectored<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A file of `len` bytes none of which is zero.
fn blob_file(len: usize) -> (Arc<std::fs::File>, Vec<u8>) {
    use std::io::Write as _;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    (Arc::new(file), data)
}

/// Serve two pipelined GETs of the file over a socket pair with hyper set
/// up for `strategy`, and return everything the client received before the
/// connection closed.
async fn two_gets(strategy: Strategy, len: usize) -> (Vec<u8>, Vec<u8>) {
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (file, data) = blob_file(len);
    let (server, mut client) = UnixStream::pair().unwrap();
    let outbox = Arc::new(Outbox::default());
    let conn = ZeroCopyConn::new(server, Arc::clone(&outbox));
    let service = hyper::service::service_fn(move |_request| {
        let content = Arc::new(berth_cache::LocalFile::new(Arc::clone(&file)));
        let span = Span::complete(content, 0, len as u64);
        let body = body(span, Arc::clone(&outbox));
        async move {
            let mut response = http::Response::new(body);
            response
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, len.into());
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    match strategy {
        Strategy::Queue => builder.writev(true),
        Strategy::Flatten => builder.writev(false),
        Strategy::PipelineFlush => builder.pipeline_flush(true),
        Strategy::HiddenVectored => &mut builder,
    };
    let server = match strategy {
        Strategy::HiddenVectored => tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(Devectored(conn)), service)
                .await;
        }),
        _ => tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(conn), service).await;
        }),
    };
    let get = b"GET /blob HTTP/1.1\r\nhost: test\r\n\r\n";
    let last = b"GET /blob HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";
    client
        .write_all(&[&get[..], &last[..]].concat())
        .await
        .unwrap();
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "{strategy:?}: the connection hung");
    server.abort();
    (received, data)
}

/// The bodies in `received`, each checked against `data`: complete and
/// equal, or cut short with every byte received equal to the file's.
fn check(strategy: Strategy, received: &[u8], data: &[u8]) -> usize {
    let mut rest = received;
    let mut complete = 0;
    while !rest.is_empty() {
        let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = std::str::from_utf8(&rest[..head_end]).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{strategy:?}: {head}");
        let body = &rest[head_end + 4..];
        let got = body.len().min(data.len());
        assert!(
            body[..got] == data[..got],
            "{strategy:?}: body bytes differ from the file (stand-in zeros sent?)"
        );
        if got < data.len() {
            break;
        }
        complete += 1;
        rest = &body[data.len()..];
    }
    complete
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_strategy_sends_the_file_or_closes() {
    let len = 2 * STRETCH + 12_345;
    for strategy in [
        Strategy::Queue,
        Strategy::Flatten,
        Strategy::PipelineFlush,
        Strategy::HiddenVectored,
    ] {
        let (received, data) = two_gets(strategy, len).await;
        let complete = check(strategy, &received, &data);
        if let Strategy::Queue = strategy {
            assert_eq!(
                complete, 2,
                "the strategy berth uses sends both bodies whole"
            );
        }
    }
}
