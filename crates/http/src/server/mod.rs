//! berth's own server loop: it accepts TCP connections, admits them
//! against the connection caps, and runs each with hyper's HTTP/1 + HTTP/2
//! connection builder configured here: vectored writes (which zero-copy
//! bodies rely on), a header-read timeout, keep-alive, and the HTTP/2
//! stream limits. Every connection carries a [`ConnInfo`] to its requests:
//! the peer address, the zero-copy outbox (plain listeners only) and the
//! streamed-body budget. On an HTTPS listener each connection first
//! completes its TLS handshake within `header_read_timeout`; its bodies are
//! then always streamed, since encryption happens here and `sendfile`
//! cannot do it. Idle connections are closed after `idle_timeout`, stalled ones after
//! `stall_timeout`, and shutdown drains every connection gracefully.

mod coalesce;
mod connections;
mod watched;

use crate::budget::{BodyBudget, SharedBudget};
use crate::zero_copy::{Outbox, ZeroCopyConn};
use axum::Router;
use axum::body::Body;
use berth_config::ServerLimits;
use berth_metrics::Metrics;
use berth_tls::ACME_TLS_ALPN;
use coalesce::Coalesce;
use connections::{Caps, Connections, Slot, Verdict};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt as _;
use watched::{Watched, WatchedBody};

/// What a request knows of its connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Where zero-copy bodies load their file stretches; `None` on TLS
    /// connections, which must never be handed a file span.
    pub(crate) outbox: Option<Arc<Outbox>>,
    /// Memory the connection's streamed bodies may hold.
    pub(crate) budget: BodyBudget,
    /// The address the client connected to (never taken from a header).
    pub(crate) local: Option<SocketAddr>,
    /// Whether the connection is HTTPS.
    pub(crate) https: bool,
}

/// How long a shed or idle connection gets to close by itself.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// HTTP/2 receive window per stream.
const H2_STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 receive window of the whole connection.
const H2_CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest HTTP/2 frame berth accepts.
const H2_FRAME: u32 = 64 << 10;
/// Bytes one HTTP/2 stream may queue for sending.
const H2_SEND_BUFFER: usize = 256 << 10;

/// A bound listener with the router and limits it serves.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    tls: Option<Arc<ServerConfig>>,
}

/// The phases a connection task follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish in-flight requests, take no new ones.
    Draining,
    /// Close now.
    Closing,
}

impl Server {
    pub fn new(
        listener: TcpListener,
        router: Router,
        limits: ServerLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            listener,
            router,
            limits,
            metrics,
            tls: None,
        }
    }

    /// Serve HTTPS: every connection starts with a TLS handshake.
    #[must_use]
    pub fn with_tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let limits = &self.limits;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        if self.tls.is_none() {
            // Body chunks must reach the connection uncopied: zero-copy
            // bodies are recognised there by address.
            builder.http1().writev(true);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams_per_connection)
            .keep_alive_interval(Some(limits.idle_timeout / 2))
            .keep_alive_timeout(limits.header_read_timeout)
            // Registry traffic is large bodies: receive windows that cover
            // a far link's bandwidth-delay product (what clients upload is
            // small, but a window too small stalls it), and a send buffer
            // of one file chunk per stream.
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_frame_size(H2_FRAME)
            .max_send_buf_size(H2_SEND_BUFFER);
        builder
    }

    /// Serve until `stop` turns true, then drain: in-flight responses
    /// finish for up to `grace`, and what is left after it is closed.
    pub async fn run(self, mut stop: watch::Receiver<bool>, grace: Duration) {
        let connections = Arc::new(Connections::new(
            Caps {
                total: self.limits.max_connections,
                per_ip: self.limits.max_connections_per_ip,
            },
            self.metrics.connections.clone(),
        ));
        let builder = Arc::new(self.builder());
        let tls = self.tls.clone().map(TlsAcceptor::from);
        let (phase_tx, phase) = watch::channel(Phase::Serving);
        // What every connection's streamed bodies may hold together.
        let bodies = SharedBudget::new(self.limits.body_memory);
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // IPv4 clients of a dual-stack listener as the IPv4 addresses
            // they are, for the per-IP caps, limits and rules alike.
            let peer = SocketAddr::new(berth_config::canonical_ip(peer.ip()), peer.port());
            let slot = match connections.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(refused) => {
                    self.metrics.connections.refuse(refused.reason());
                    tracing::warn!(%peer, cap = refused.reason(), "connection refused: at the connection cap");
                    drop(tcp);
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let conn = Conn {
                slot,
                peer,
                router: self.router.clone(),
                builder: Arc::clone(&builder),
                limits: self.limits.clone(),
                metrics: Arc::clone(&self.metrics),
                phase: phase.clone(),
                local: None,
                https: false,
                bodies: bodies.clone(),
            };
            tokio::spawn(conn.accept(tcp, tls.clone()));
        }
        drop(self.listener);
        let open = connections.len();
        tracing::info!(
            ?grace,
            open,
            "shutting down: no new connections, draining in-flight responses"
        );
        let _ = phase_tx.send(Phase::Draining);
        if tokio::time::timeout(grace, connections.drained())
            .await
            .is_ok()
        {
            tracing::info!("drained; bye");
            return;
        }
        let _ = phase_tx.send(Phase::Closing);
        let _ = tokio::time::timeout(CLOSE_GRACE, connections.drained()).await;
        tracing::warn!("grace period over; closed the remaining connections");
    }
}

/// One accepted connection and what serving it needs.
struct Conn {
    slot: Slot,
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    phase: watch::Receiver<Phase>,
    local: Option<SocketAddr>,
    https: bool,
    /// The listener's budget for streamed bodies.
    bodies: SharedBudget,
}

impl Conn {
    /// Complete the TLS handshake, if this is an HTTPS listener, then serve.
    async fn accept(mut self, tcp: tokio::net::TcpStream, tls: Option<TlsAcceptor>) {
        self.local = tcp.local_addr().ok();
        self.https = tls.is_some();
        let Some(tls) = tls else {
            let outbox = Arc::new(Outbox::new(self.metrics.served_zero_copy_bytes.clone()));
            let socket = ZeroCopyConn::new(tcp, Arc::clone(&outbox));
            return self.serve(socket, Some(outbox)).await;
        };
        let handshake = tokio::time::timeout(self.limits.header_read_timeout, tls.accept(tcp));
        match handshake.await {
            // A TLS-ALPN-01 validation: the handshake was the answer.
            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {}
            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                self.serve(Coalesce::new(stream), None).await;
            }
            Ok(Ok(stream)) => self.serve(stream, None).await,
            Ok(Err(e)) => {
                self.metrics.tls.handshake_failures.inc();
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                self.metrics.tls.handshake_failures.inc();
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
            }
        }
    }

    async fn serve<S>(mut self, socket: S, outbox: Option<Arc<Outbox>>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::clone(self.slot.activity());
        let info = ConnInfo {
            peer: self.peer,
            outbox,
            budget: self.bodies.connection(self.limits.connection_buffer),
            local: self.local,
            https: self.https,
        };
        let io = Watched::new(socket, Arc::clone(&activity));
        let router = self.router.clone();
        let requests = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            let guard = requests.begin();
            request.extensions_mut().insert(info.clone());
            let response = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = match response.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| Body::new(WatchedBody::new(body, guard))))
            }
        });
        let builder = Arc::clone(&self.builder);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let (idle, stall) = (self.limits.idle_timeout, self.limits.stall_timeout);
        let reason = loop {
            let wait = match activity.verdict(idle, stall) {
                Verdict::Wait(wait) => wait,
                Verdict::Idle => break Some("idle"),
                Verdict::Stalled => break Some("stalled"),
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, error = %e, cause = ?std::error::Error::source(&*e), "connection ended with an error");
                    }
                    return;
                }
                // The table counted it.
                () = activity.shed() => break None,
                () = tokio::time::sleep(wait) => {}
                Ok(()) = self.phase.changed() => {
                    if *self.phase.borrow() != Phase::Serving {
                        connection.as_mut().graceful_shutdown();
                        self.drain(connection).await;
                        return;
                    }
                }
            }
        };
        if let Some(reason) = reason {
            self.metrics.connections.close(reason);
        }
        tracing::debug!(peer = %self.peer, reason = reason.unwrap_or("shed"), "closing connection");
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
    }

    /// Run a connection told to shut down gracefully until it ends, or
    /// until the phase says to close it now.
    async fn drain<F: std::future::Future>(&mut self, mut connection: std::pin::Pin<&mut F>) {
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                changed = self.phase.changed() => {
                    if changed.is_err() || *self.phase.borrow() == Phase::Closing {
                        return;
                    }
                }
            }
        }
    }
}
