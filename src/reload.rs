//! Live reload of the configuration file: on SIGHUP and when the file
//! changes (checked every second, read once it has held still for one
//! check). The new file is validated as at start; a bad one is refused
//! with its problems logged, and the old settings stay. What can change
//! while serving is swapped in for new requests (requests in flight and
//! downloads keep the settings they started with): the upstreams with
//! their transport and cache policy, access rules, logins and limits,
//! `domain`, `url302`, CORS origins and the log level. Settings that need
//! a restart (`listen`, `data_dir`, `[tls]`, `[admin]`, `[server]`,
//! `[cache]`, `shutdown_grace`, `log_format`) are named in the log and
//! keep their running values. Certificates reload on SIGHUP too.
//!
//! A change of the file seen by the watcher never loosens access (drops
//! logins, opens anonymous pulls, removes or changes a rule, drops the
//! rate limit): a file caught half-written could otherwise open the
//! mirror. Such a file is applied only on SIGHUP (or at a restart), and
//! the log says why. The htpasswd file is watched too: a change applies
//! at the next check, so a removed user or an old password stops working
//! within about a second.

use crate::telemetry::LogLevel;
use berth_access::Access;
use berth_config::Config;
use berth_http::{HttpState, Live};
use berth_metrics::Metrics;
use berth_pull::Origins;
use berth_tls::Tls;
use berth_upstream::{OwnListeners, UpstreamSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// What a reload needs.
pub(crate) struct Reloader {
    pub(crate) path: PathBuf,
    pub(crate) running: Config,
    pub(crate) state: Arc<HttpState>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) log_level: LogLevel,
    pub(crate) tls: Option<Arc<Tls>>,
    /// Where this berth listens, for the new upstream clients.
    pub(crate) own: OwnListeners,
}

/// The file's modification time and length: what "it changed" means.
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Reloader {
    /// Reload on each of `hangups` (SIGHUP) and on changes of the file,
    /// until the process ends.
    pub(crate) async fn run(mut self, mut hangups: Option<tokio::signal::unix::Signal>) {
        let mut seen = stamp(&self.path);
        let mut pending: Option<Option<(SystemTime, u64)>> = None;
        let mut logins_seen = self.logins_stamp();
        let mut tick = tokio::time::interval(POLL);
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hangup => {
                    if let Some(tls) = &self.tls {
                        tls.reload("SIGHUP");
                    }
                    self.reload("SIGHUP");
                    seen = stamp(&self.path);
                    pending = None;
                    logins_seen = self.logins_stamp();
                }
                _ = tick.tick() => {
                    let logins = self.logins_stamp();
                    if logins != logins_seen {
                        self.reload_logins();
                        logins_seen = logins;
                    }
                    let now = stamp(&self.path);
                    if now == seen {
                        pending = None;
                    } else if pending == Some(now) {
                        // Held still for one check: a whole new file.
                        self.reload("the file changed");
                        seen = now;
                        pending = None;
                    } else {
                        pending = Some(now);
                    }
                }
            }
        }
    }

    /// The htpasswd file's stamp, when logins are on.
    fn logins_stamp(&self) -> Option<(SystemTime, u64)> {
        stamp(self.running.access.auth.htpasswd_file.as_ref()?)
    }

    /// Read the htpasswd file again into the running access policy.
    fn reload_logins(&self) {
        let access = match Access::load(&self.running.access) {
            Ok(a) => a.with_fleet(self.state.live().access.fleet()),
            Err(e) => {
                tracing::error!("logins not reloaded, the running ones stay: {e}");
                return;
            }
        };
        let current = self.state.live();
        self.state.live.store(Arc::new(Live {
            origins: Arc::clone(&current.origins),
            domain: current.domain.clone(),
            access: Arc::new(access),
            url302: current.url302.clone(),
            cors_origins: current.cors_origins.clone(),
        }));
        tracing::info!("logins reloaded: the htpasswd file changed");
    }

    /// Read, check and apply the file; on any problem keep what runs.
    fn reload(&mut self, why: &str) {
        let config = match Config::load(&self.path, &|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(file = %self.path.display(), trigger = why, "configuration not reloaded, the running one stays: {e}");
                return;
            }
        };
        let loosens = config.access.loosens(&self.running.access);
        if why != "SIGHUP" && !loosens.is_empty() {
            tracing::warn!(
                trigger = why,
                "configuration not reloaded, the running one stays: it would loosen access ({}); a file caught half-written could do that, so such a change applies only on SIGHUP or a restart (write the file whole, by rename)",
                loosens.join(", ")
            );
            return;
        }
        let access = match Access::load(&config.access) {
            Ok(a) => a.with_fleet(self.state.live().access.fleet()),
            Err(e) => {
                tracing::error!(
                    trigger = why,
                    "configuration not reloaded, the running one stays: {e}"
                );
                return;
            }
        };
        let upstreams = match UpstreamSet::serving(&config.upstreams, &self.metrics, &self.own) {
            Ok(u) => {
                if let Some(slots) = self.state.live().origins.upstreams().fleet_slots() {
                    u.share_slots(&slots);
                }
                u
            }
            Err(e) => {
                tracing::error!(trigger = why, error = %e, "configuration not reloaded, the running one stays: cannot build the upstream clients");
                return;
            }
        };
        upstreams.learn_challenges();
        let needs_restart = restart_only_changes(&self.running, &config);
        for key in &needs_restart {
            tracing::warn!(
                key = *key,
                "{key} changed in the file: it takes effect only after a restart; the running value stays"
            );
        }
        if let Err(e) = self.log_level.set(&config.log_level)
            && config.log_level != self.running.log_level
        {
            tracing::warn!("log_level not changed: {e}");
        }
        let origins = Origins::new(
            upstreams,
            &config.upstreams,
            Some(&self.state.live().origins),
        );
        self.state
            .live
            .store(Arc::new(live(&config, origins, access)));
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        tracing::info!(
            trigger = why,
            upstreams = config.upstreams.len(),
            rules = config.access.rules.len(),
            "configuration reloaded"
        );
        // Keep the running values of what needs a restart, so the next
        // reload compares against what actually runs.
        let mut running = config;
        keep_running(&mut running, &self.running);
        self.running = running;
    }
}

/// The keys whose change needs a restart.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen");
    }
    if old.data_dir != new.data_dir {
        keys.push("data_dir");
    }
    if old.tls != new.tls {
        keys.push("[tls]");
    }
    if old.admin != new.admin {
        keys.push("[admin]");
    }
    if old.server != new.server {
        keys.push("[server]");
    }
    if old.cache != new.cache {
        keys.push("[cache]");
    }
    if old.storage != new.storage {
        keys.push("[storage]");
    }
    if old.shutdown_grace != new.shutdown_grace {
        keys.push("shutdown_grace");
    }
    if old.log_format != new.log_format {
        keys.push("log_format");
    }
    keys
}

fn keep_running(new: &mut Config, old: &Config) {
    new.listen = old.listen;
    new.data_dir.clone_from(&old.data_dir);
    new.tls.clone_from(&old.tls);
    new.admin.clone_from(&old.admin);
    new.server.clone_from(&old.server);
    new.cache.clone_from(&old.cache);
    new.storage.clone_from(&old.storage);
    new.shutdown_grace = old.shutdown_grace;
    new.log_format = old.log_format;
}

/// The settings a reload can replace, as `config` gives them.
pub(crate) fn live(config: &Config, origins: Origins, access: Access) -> Live {
    Live {
        origins: Arc::new(origins),
        domain: config.domain.clone(),
        access: Arc::new(access),
        url302: config.url302.clone(),
        cors_origins: config.access.cors_origins.clone(),
    }
}
