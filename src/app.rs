//! The composition root: builds stores, upstream clients, the engine and
//! the router from a [`Config`], binds the listener and runs until a
//! signal, then drains in-flight responses for the grace period.
//!
//! Nothing imports this module except `main` and the CLI.

use anyhow::Context as _;
use berth_access::Access;
use berth_cache::{Layout, Lifecycle, PinPattern};
use berth_config::Config;
use berth_config::ServerLimits;
use berth_http::{
    HttpState, Server, admin_hosts_only, admin_listener_router, admin_router, ops_routes,
    peer_router, public_ops_routes, redirect_router, router,
};
use berth_metrics::Metrics;
use berth_pull::{Origins, PullService};
use berth_tls::Tls;
use berth_upstream::{OwnListeners, UpstreamSet};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A bound, ready-to-run berth.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    grace: std::time::Duration,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    /// HTTPS on the public listener, when `[tls]` is configured.
    tls: Option<Arc<Tls>>,
    /// The listeners beside the public one: admin, redirect to HTTPS.
    side: Vec<Side>,
    /// What a configuration reload swaps settings into.
    state: Arc<HttpState>,
    /// The configuration it was built from.
    config: Config,
    /// Reload from this file, when set (see `reload.rs`).
    reload: Option<(std::path::PathBuf, crate::telemetry::LogLevel)>,
    /// Where this berth listens: no upstream redirect may lead there.
    own: OwnListeners,
    /// The blob store and what it holds (the data dir's lock, on `s3`).
    _stores: crate::blob_store::Opened,
}

/// A listener beside the public one.
#[derive(Debug)]
struct Side {
    listener: TcpListener,
    router: axum::Router,
    /// What it is and serves, for the log line.
    what: &'static str,
}

impl App {
    /// Build everything and bind the listen address. Fails with a clear
    /// message when the cache directory is unusable or the port is taken.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let (stores, index) = crate::blob_store::open(config, lifecycle(config)?).await?;
        // The data directory's own files (index, ACME state, the control
        // socket) are the app's; only the blobs are the store's.
        let data_dir = Layout::new(&config.data_dir);
        let metrics = Arc::new(Metrics::new());
        let own = OwnListeners::default();
        let upstreams = UpstreamSet::serving(&config.upstreams, &metrics, &own)
            .context("cannot build the upstream HTTP clients")?;
        upstreams.learn_challenges();
        let maintenance = stores.maintenance.clone();
        if let Err(e) = crate::control::serve(&data_dir, maintenance.clone()) {
            tracing::warn!(error = %format!("{e:#}"), "no control socket: `berth cache purge` will refuse while this berth serves");
        }
        let acme_root = data_dir.acme();
        let joined = crate::cluster::join(config, index, &metrics)?;
        if let Some(slots) = &joined.slots {
            upstreams.share_slots(slots);
        }
        let pull = PullService::with_surroundings(
            Arc::clone(&stores.blobs),
            joined.index,
            Arc::clone(&metrics),
            config.cache.eager_bytes,
            joined.surroundings,
        );
        let access = Access::load(&config.access)
            .context("cannot use the access settings")?
            .with_fleet(joined.buckets.clone());
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let mut state = HttpState::new(
            pull,
            Arc::clone(&metrics),
            crate::reload::live(
                config,
                Origins::new(upstreams, &config.upstreams, None),
                access,
            ),
        );
        state.cluster = joined.view.clone();
        let state = Arc::new(state);
        let tls = match &config.tls {
            Some(settings) => Some(Arc::new(
                Tls::start(settings, &acme_root, Arc::clone(&metrics))
                    .context("cannot serve HTTPS")?,
            )),
            None => None,
        };
        let listener = bind(config.listen, "`listen` in the config or BERTH_LISTEN").await?;
        let mut side = Vec::new();
        if let (Some(tls), Some(addr)) = (&tls, config.tls.as_ref().and_then(|t| t.redirect_listen))
        {
            side.push(Side {
                listener: bind(addr, "`tls.redirect_listen` in the config").await?,
                router: redirect_router(
                    Arc::clone(tls),
                    config.domain.clone(),
                    listener.local_addr()?.port(),
                ),
                what: "redirect listener",
            });
        }
        let mut public = router(Arc::clone(&state));
        if let Some(secret) = joined.peer_secret {
            public = public.merge(peer_router(Arc::clone(&state), secret));
        }
        let admin_token = config.admin.token.clone();
        match config.admin.listen {
            Some(addr) => side.push(Side {
                listener: bind(addr, "`admin.listen` in the config or BERTH_ADMIN_LISTEN").await?,
                router: admin_hosts_only(
                    admin_listener_router(
                        maintenance,
                        admin_token,
                        Arc::clone(&state),
                        Arc::clone(&metrics),
                    )
                    .merge(ops_routes(Arc::clone(&state))),
                    config.domain.clone(),
                ),
                what: "admin listener",
            }),
            None => {
                public = public.merge(public_ops_routes(Arc::clone(&state), admin_token.clone()));
                if admin_token.is_some() {
                    public =
                        public.merge(admin_router(maintenance, admin_token, Arc::clone(&state)));
                }
            }
        }
        own.add(listener.local_addr()?);
        for s in &side {
            own.add(s.listener.local_addr()?);
        }
        if let Some(file) = &config.cache.prefetch_file {
            let server = crate::prefetch::local_url(listener.local_addr()?, tls.is_some());
            let every = config.cache.prefetch_interval;
            tokio::spawn(crate::prefetch::schedule(server, file.clone(), every));
        }
        Ok(Self {
            listener,
            router: public,
            grace: config.shutdown_grace,
            limits: server_limits(config),
            metrics,
            tls,
            side,
            state,
            config: config.clone(),
            reload: None,
            own,
            _stores: stores,
        })
    }

    /// Reload the configuration from `path` on SIGHUP and when it changes,
    /// setting the log level through `log_level`.
    pub fn reload_from(
        mut self,
        path: std::path::PathBuf,
        log_level: crate::telemetry::LogLevel,
    ) -> Self {
        self.reload = Some((path, log_level));
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` resolves, then drain for the grace period.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        // Before berth says it listens: a SIGHUP from then on must reload,
        // never end the process.
        let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: settings reload only when their files change");
                None
            }
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, "berth listening on {scheme}://{addr}");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut sides = Vec::new();
        for side in self.side {
            let addr = side.listener.local_addr()?;
            tracing::info!(%addr, "{} on http://{addr}", side.what);
            let server = Server::new(
                side.listener,
                side.router,
                self.limits.clone(),
                Arc::clone(&self.metrics),
            );
            sides.push(tokio::spawn(server.run(stop_rx.clone(), self.grace)));
        }
        let mut server = Server::new(
            self.listener,
            self.router,
            self.limits,
            Arc::clone(&self.metrics),
        );
        if let Some(tls) = &self.tls {
            server = server.with_tls(tls.server_config());
            tls.keep_current();
        }
        tokio::spawn(publish_store_gauges(Arc::clone(&self.state)));
        match self.reload {
            Some((path, log_level)) => {
                let reloader = crate::reload::Reloader {
                    path,
                    running: self.config,
                    state: self.state,
                    metrics: Arc::clone(&self.metrics),
                    log_level,
                    tls: self.tls.clone(),
                    own: self.own,
                };
                tokio::spawn(reloader.run(hangups));
            }
            None => {
                tokio::spawn(reload_on_hangup(self.tls.clone(), hangups));
            }
        }
        let mut server = tokio::spawn(server.run(stop_rx, self.grace));
        tokio::select! {
            result = &mut server => return result.context("server task failed"),
            () = shutdown => {}
        }
        let _ = stop_tx.send(true);
        for side in sides {
            side.await.context("server task failed")?;
        }
        server.await.context("server task failed")
    }
}

/// Bind `addr`; `setting` names where it is configured, for the message
/// when the port is taken.
async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "cannot listen on {addr}: the port is already in use by another process; \
                 stop it or choose another address with {setting}"
            )
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {e}")
        }
    })
}

/// Keep the gauges of what the store holds and downloads current.
async fn publish_store_gauges(state: Arc<HttpState>) {
    let gauges = &state.metrics.upstream;
    let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    loop {
        let usage = state.pull.store_usage();
        gauges
            .cache_size_bytes
            .set(as_gauge(usage.bytes.unwrap_or(0)));
        gauges.cache_cap_bytes.set(as_gauge(usage.cap.unwrap_or(0)));
        let fills = state.pull.fills_in_flight().len() as u64;
        gauges.fills_in_flight.set(as_gauge(fills));
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Without a config file to reload: reload the certificate files on each
/// SIGHUP, if any (and otherwise take the signal without ending).
async fn reload_on_hangup(tls: Option<Arc<Tls>>, hangups: Option<tokio::signal::unix::Signal>) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        match &tls {
            Some(tls) => {
                tls.reload("SIGHUP");
            }
            None => tracing::info!("SIGHUP: no configuration file to reload"),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `[server]`'s limits, with `[limits] connections` as the per-IP cap
/// when it is the lower.
fn server_limits(config: &Config) -> ServerLimits {
    let mut limits = config.server.clone();
    if let Some(per_ip) = config.access.limits.connections {
        limits.max_connections_per_ip = limits.max_connections_per_ip.min(per_ip);
    }
    limits
}

/// The store's lifecycle as `[cache]` configures it.
fn lifecycle(config: &Config) -> anyhow::Result<Lifecycle> {
    let pins = config
        .cache
        .pin
        .iter()
        .map(|p| PinPattern::parse(p).with_context(|| format!("cache.pin: {p:?} is not a pattern")))
        .collect::<anyhow::Result<_>>()?;
    Ok(Lifecycle {
        max_size: config.cache.max_size,
        max_age: config.cache.max_age,
        pins,
    })
}
