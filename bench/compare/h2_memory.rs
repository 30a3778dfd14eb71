//! berth's memory under stalled HTTP/2 connections: many prior-knowledge
//! h2c connections, from a few client addresses, each opening streams for
//! the cached 48 MiB blob with flow-control windows wide open and then never
//! reading the socket. The row gives berth's VmRSS before (warm, idle), at
//! its peak while the connections are held, and a minute after they closed;
//! a note gives one h2 download of the same blob, for the throughput the
//! bounds cost.
//!
//! The client writes its frames by hand (preface, SETTINGS, a connection
//! WINDOW_UPDATE and one HEADERS frame per stream), so it holds no memory of
//! its own per stream and stalls exactly: it never reads a byte back.
//! `H2MEM_CONNECTIONS` and `H2MEM_STREAMS` change the load.

use crate::sys::{Quiet, RssSampler, status_bytes};
use crate::{Ctx, warm};
use berth_testkit::report::{Table, gibps, median, mib};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};

/// Stalled connections opened (spread over [`ADDRESSES`] client addresses).
const CONNECTIONS: usize = 1000;
/// Streams per connection: enough to fill a connection's 4 MiB body
/// budget with 256 KiB chunks.
const STREAMS: usize = 16;
/// Client addresses 127.0.0.1 ..= 127.0.0.4, under the per-IP cap of 256.
const ADDRESSES: u8 = 4;
/// How long the connections are held once all are open (well under the
/// keep-alive ping's 30 s + 20 s, after which berth closes them itself).
const HOLD: Duration = Duration::from_secs(10);
/// How long after the close the memory is read again.
const LINGER: Duration = Duration::from_secs(60);
/// Connections opened at once.
const BATCH: usize = 50;
/// Largest HTTP/2 window (2^31 - 1).
const WIDE: u32 = 0x7fff_ffff;
/// The goal for the peak, in bytes.
const PEAK_GOAL: f64 = 256.0 * 1024.0 * 1024.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One HTTP/2 frame: header (length, type, flags, stream) and payload.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("frame length");
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string literal (no Huffman), for values under 127 bytes.
fn literal(out: &mut Vec<u8>, value: &str) {
    out.push(u8::try_from(value.len()).expect("short header value"));
    out.extend_from_slice(value.as_bytes());
}

/// Everything the stalled client ever sends: the preface, SETTINGS with the
/// widest stream window, the widest connection window, and `streams` GETs
/// of `path` (stream ids 1, 3, 5, ...).
fn attack_bytes(authority: &str, path: &str, streams: usize) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = Vec::new();
    for (id, value) in [(0x2u16, 0u32), (0x4, WIDE)] {
        settings.extend_from_slice(&id.to_be_bytes());
        settings.extend_from_slice(&value.to_be_bytes());
    }
    frame(&mut out, 0x4, 0, 0, &settings);
    frame(&mut out, 0x8, 0, 0, &(WIDE - 65_535).to_be_bytes());
    // :method GET and :scheme http from the static table, :path (4) and
    // :authority (1) as literals with indexed names.
    let mut block = vec![0x82, 0x86, 0x04];
    literal(&mut block, path);
    block.push(0x01);
    literal(&mut block, authority);
    for i in 0..streams {
        let id = u32::try_from(2 * i + 1).expect("stream id");
        // END_STREAM | END_HEADERS
        frame(&mut out, 0x1, 0x5, id, &block);
    }
    out
}

/// Opens one stalled connection from `source`.
async fn stalled(source: Ipv4Addr, server: SocketAddr, bytes: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .expect("bind a client address");
    let mut tcp = socket.connect(server).await.expect("connect to berth");
    tcp.write_all(bytes).await.expect("send the requests");
    tcp
}

/// The value of one sample in berth's `/metrics`.
async fn metric(ctx: &Ctx, base: &str, sample: &str) -> Option<f64> {
    let text = ctx
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// Bytes/s of one prior-knowledge h2c GET of `url` (`size` bytes), median
/// of three.
async fn h2_rate(url: &str, size: u64) -> f64 {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let mut rates = Vec::new();
    for _ in 0..3 {
        let (status, n, took) = crate::get_all(&client, url, &[]).await;
        assert_eq!((status, n), (200, size), "h2 GET {url}");
        rates.push(size as f64 / took.as_secs_f64());
    }
    median(rates)
}

/// The stalled-connection row.
pub(crate) async fn h2_memory(ctx: &Ctx, table: &mut Table) {
    let connections = env_usize("H2MEM_CONNECTIONS", CONNECTIONS);
    let streams = env_usize("H2MEM_STREAMS", STREAMS);
    let images = ctx.up.images();
    let blob = images.big.largest_blob();
    let path = images.big.blob_path(blob);
    let berth = ctx.berth();
    let base = berth.url();
    let url = format!("{base}{path}");
    warm(ctx, &url, &[], blob.size).await;
    let rate = h2_rate(&url, blob.size).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = berth.pid();
    let quiet = Quiet::begin();
    let baseline = status_bytes(pid, "VmRSS").unwrap_or(0) as f64;

    let server: SocketAddr = berth.addr.parse().expect("berth's address");
    let bytes = attack_bytes(&berth.addr, &path, streams);
    let sampler = RssSampler::start(pid);
    let start = Instant::now();
    let mut held = Vec::with_capacity(connections);
    for batch in (0..connections).collect::<Vec<_>>().chunks(BATCH) {
        let opened = batch.iter().map(|&i| {
            let last = u8::try_from(i % usize::from(ADDRESSES)).expect("address") + 1;
            stalled(Ipv4Addr::new(127, 0, 0, last), server, &bytes)
        });
        held.extend(futures_util::future::join_all(opened).await);
    }
    let opened_in = start.elapsed();
    tokio::time::sleep(HOLD).await;
    let open = metric(ctx, &base, "berth_connections_open").await;
    let peak = sampler.peak() as f64;
    drop(held);

    // Wait for berth to see every connection closed (but the one asking),
    // then the minute.
    let closing = Instant::now();
    while closing.elapsed() < Duration::from_secs(30)
        && metric(ctx, &base, "berth_connections_open")
            .await
            .is_some_and(|n| n > 1.0)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(LINGER).await;
    let after = status_bytes(pid, "VmRSS").unwrap_or(0) as f64;
    let back = after <= baseline * 1.1;

    table.row(
        &quiet.mark(&format!(
            "VmRSS with {connections} stalled h2c connections × {streams} streams of the \
             48 MiB blob: baseline / peak / 60 s after close"
        )),
        format!("{} / {} / {}", mib(baseline), mib(peak), mib(after)),
        "—".to_owned(),
        format!(
            "peak {}, after close {}",
            if peak <= PEAK_GOAL { "ok" } else { "over" },
            if back { "ok" } else { "over" }
        ),
        "peak <= 256 MiB; after close within 10 % of baseline",
    );
    table.note(format!(
        "h2 memory: {connections} connections from {ADDRESSES} loopback addresses opened in \
         {:.1} s, each sending SETTINGS with a 2^31-1 stream window, a connection \
         WINDOW_UPDATE to 2^31-1 and {streams} GETs, then never reading; held {} s \
         (berth's open-connection gauge then: {}); VmRSS sampled every 50 ms. One h2c GET \
         of the blob (reqwest, prior knowledge), median of 3: {}.",
        opened_in.as_secs_f64(),
        HOLD.as_secs(),
        open.map_or("?".to_owned(), |n| format!("{n:.0}")),
        gibps(rate),
    ));
}
