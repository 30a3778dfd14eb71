//! A near-free HTTP/1.1 client for server throughput: each connection sends
//! keep-alive GETs and discards the bodies in the kernel (`recv` with
//! `MSG_TRUNC`, which on TCP drops the bytes without copying them). On a
//! 2-core machine where the client shares the CPU, this shows what the
//! server itself costs per byte, where wrk and curl mostly show their own
//! copies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes discarded per `recv` call at most.
const GULP: usize = 4 << 20;

/// `conns` connections GETting `url` (`http://host:port/path`, answered
/// 200 with `size` bytes) back to back for `duration`: body bytes/s.
pub(crate) async fn rate(url: &str, size: u64, conns: usize, duration: Duration) -> f64 {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("URL path"));
    let (host, path) = (host.to_owned(), path.to_owned());
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (host, path) = (host.clone(), path.clone());
            tokio::task::spawn_blocking(move || connection(&host, &path, size, duration))
        })
        .collect();
    let mut bytes = 0;
    for w in workers {
        bytes += w.await.expect("sink connection");
    }
    bytes as f64 / started.elapsed().as_secs_f64()
}

/// One connection's loop; returns body bytes received in whole responses.
fn connection(host: &str, path: &str, size: u64, duration: Duration) -> u64 {
    let mut tcp = TcpStream::connect(host).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut gulp = vec![0u8; GULP];
    let deadline = Instant::now() + duration;
    let mut total = 0;
    while Instant::now() < deadline {
        tcp.write_all(request.as_bytes()).expect("send request");
        read_head(&mut tcp, size);
        let mut left = size;
        while left > 0 {
            let want = (left as usize).min(GULP);
            let (_, n) = rustix::net::recv(&tcp, &mut gulp[..want], rustix::net::RecvFlags::TRUNC)
                .expect("recv body");
            assert!(n > 0, "server closed mid-body with {left} bytes to go");
            left -= n as u64;
        }
        total += size;
    }
    total
}

/// Reads the response head byte-wise up to the blank line (so no body byte
/// is taken with it), checking for 200 and the length.
fn read_head(tcp: &mut TcpStream, size: u64) {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("read head");
        head.push(byte[0]);
        assert!(head.len() < 16 << 10, "response head too long");
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "answer: {text}");
    let length = format!("content-length: {size}\r\n");
    assert!(text.contains(&length), "answer without {length}: {text}");
}
