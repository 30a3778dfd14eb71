//! The counting tap: a transparent HTTP/1.1 reverse proxy in front of the
//! upstream registry. It streams bodies both ways, forwards every header as
//! is (repeated `Accept` lines, `WWW-Authenticate`, `Location`; only
//! hop-by-hop headers are dropped), and records each request. It also owns
//! the fault knobs tests use against the upstream: a delay before forwarding,
//! a per-frame body throttle, a rate cap on each response body, and "answer
//! the next N requests with status S". A delay plus a rate cap make the
//! upstream look far away: each request costs a round trip, and each
//! connection is slow while many together are fast.

use super::proc::Background;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Body = BoxBody<Bytes, hyper::Error>;

/// One request that went through the tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// e.g. "/v2/library/small/manifests/latest"
    pub path: String,
    /// The raw query string without '?', e.g. "ns=docker.io".
    pub query: Option<String>,
    /// Every `Accept` header line, in order, unsplit.
    pub accept: Vec<String>,
    /// Whether the request carried an `Authorization` header.
    pub authorized: bool,
    /// Its `Authorization` header's scheme (`Bearer`, `Basic`), if any.
    pub auth_scheme: Option<String>,
    /// The name of every header it carried, lower case.
    pub header_names: Vec<String>,
    /// The status the client got (recorded when the response head is sent).
    pub status: u16,
}

#[derive(Debug, Default)]
struct Faults {
    delay: Option<Duration>,
    throttle: Option<Duration>,
    rate: Option<u64>,
    fail_next: Option<(usize, u16)>,
}

/// Shared between the tap's connections and its owner; survives restarts.
#[derive(Debug, Default)]
pub struct TapState {
    records: Mutex<Vec<Recorded>>,
    faults: Mutex<Faults>,
}

impl TapState {
    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().expect("records lock").clone()
    }

    pub fn clear(&self) {
        self.records.lock().expect("records lock").clear();
    }

    pub fn set_delay(&self, delay: Option<Duration>) {
        self.faults.lock().expect("faults lock").delay = delay;
    }

    pub fn set_throttle(&self, per_frame: Option<Duration>) {
        self.faults.lock().expect("faults lock").throttle = per_frame;
    }

    /// Cap each response body at `bytes_per_sec` (None: full speed). An
    /// HTTP/1.1 connection carries one response at a time, so this is a
    /// per-connection cap.
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        self.faults.lock().expect("faults lock").rate = bytes_per_sec.filter(|r| *r > 0);
    }

    pub fn fail_next(&self, count: usize, status: u16) {
        self.faults.lock().expect("faults lock").fail_next = (count > 0).then_some((count, status));
    }

    fn take_failure(&self) -> Option<u16> {
        let mut f = self.faults.lock().expect("faults lock");
        let (left, status) = f.fail_next?;
        f.fail_next = (left > 1).then_some((left - 1, status));
        Some(status)
    }
}

/// A running tap. Dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct Tap {
    addr: SocketAddr,
    _bg: Background,
}

impl Tap {
    /// Listens on 127.0.0.1:`port` (0 = any) and forwards to `upstream`.
    pub fn start(port: u16, upstream: SocketAddr, state: Arc<TapState>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let bg = Background::new("tap");
        bg.handle().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        forward(state.clone(), upstream, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), svc)
                        .await;
                });
            }
        });
        Ok(Tap { addr, _bg: bg })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn forward(
    state: Arc<TapState>,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut rec = Recorded {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        accept: req
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
        authorized: req.headers().contains_key(header::AUTHORIZATION),
        auth_scheme: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned),
        header_names: req
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect(),
        status: 0,
    };
    let (delay, throttle, rate) = {
        let f = state.faults.lock().expect("faults lock");
        (f.delay, f.throttle, f.rate)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let resp = match state.take_failure() {
        Some(status) => plain(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "injected failure",
        ),
        None => match send_upstream(upstream, req).await {
            Ok(resp) => resp.map(|b| paced(throttled(b, throttle), rate)),
            Err(e) => plain(StatusCode::BAD_GATEWAY, &format!("tap: upstream: {e}")),
        },
    };
    rec.status = resp.status().as_u16();
    state.records.lock().expect("records lock").push(rec);
    Ok(resp)
}

async fn send_upstream(
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, String> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = path.parse().map_err(|e| format!("uri: {e}"))?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::EXPECT);
    if !parts.headers.contains_key(header::HOST) {
        let host = HeaderValue::from_str(&upstream.to_string()).map_err(|e| e.to_string())?;
        parts.headers.insert(header::HOST, host);
    }
    let tcp = tokio::net::TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut resp = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| e.to_string())?;
    strip_hop_by_hop(resp.headers_mut());
    Ok(resp)
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// The upstream body, optionally sleeping after every frame.
fn throttled(body: Incoming, per_frame: Option<Duration>) -> Body {
    let Some(pause) = per_frame else {
        return body.boxed();
    };
    let frames = stream::unfold(body, move |mut body| async move {
        let frame = body.frame().await?;
        tokio::time::sleep(pause).await;
        Some((frame, body))
    });
    StreamBody::new(frames).boxed()
}

/// `body`, each frame held back until its bytes and those before it have
/// had their time at `rate` bytes per second, counted from the head.
fn paced(body: Body, rate: Option<u64>) -> Body {
    let Some(rate) = rate else {
        return body;
    };
    let start = tokio::time::Instant::now();
    let frames = stream::unfold((body, 0u64), move |(mut body, sent)| async move {
        let frame = body.frame().await?;
        let len = frame
            .as_ref()
            .ok()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        let sent = sent + len;
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        Some((frame, (body, sent)))
    });
    StreamBody::new(frames).boxed()
}

fn plain(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(msg.to_owned()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}
