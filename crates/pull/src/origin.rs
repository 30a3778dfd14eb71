//! The upstream a pull goes to, as admission hands it to the engine.
//!
//! [`Origins`] is built once per configuration load: for each configured
//! upstream, its client, its cache policy and the permits of the fills it
//! may run with no client waiting. A request takes its [`Origin`] from the
//! load in force when it arrived and keeps it to its end.

use crate::source::{FillSource, UpstreamSource};
use berth_config::{AuthMode, CachePolicy, UpstreamConfig};
use berth_upstream::{Upstream, UpstreamSet};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The upstream a request goes to, with the cache policy for what comes
/// from it, and (in pass-through mode) the client's own credentials.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The upstream client.
    pub upstream: Arc<Upstream>,
    /// How its answers are cached.
    pub policy: Arc<CachePolicy>,
    /// Permits for its fills that go on with no client waiting
    /// (`unattended_fills` of them).
    pub(crate) unattended: Arc<Semaphore>,
    /// The client's `Authorization`, sent upstream in place of berth's
    /// tokens; only in pass-through mode.
    client_authorization: Option<Arc<str>>,
}

impl Origin {
    /// This origin asked with a client's own `Authorization` (pass-through
    /// mode; `None`: the client gave none and is anonymous).
    pub fn for_client(self, authorization: Option<&str>) -> Self {
        Self {
            client_authorization: authorization.map(Arc::from),
            ..self
        }
    }

    /// Whether each client's credentials go upstream (pass-through mode).
    pub fn is_passthrough(&self) -> bool {
        self.upstream.config().auth_mode == AuthMode::Passthrough
    }

    /// The client's `Authorization` to send upstream, if any.
    pub fn client_authorization(&self) -> Option<&str> {
        self.client_authorization.as_deref()
    }

    /// Where this origin's blobs are filled from.
    pub fn source(&self) -> Arc<dyn FillSource> {
        Arc::new(UpstreamSource {
            upstream: Arc::clone(&self.upstream),
            client: self.client_authorization.clone(),
        })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        self.upstream.name()
    }
}

/// Every configured upstream's origin, for one configuration load.
#[derive(Debug, Default)]
pub struct Origins {
    upstreams: UpstreamSet,
    by_name: HashMap<String, Origin>,
}

impl Origins {
    /// The origins of `upstreams`, with the policies `configs` give them.
    /// Where `previous` (the load this one replaces) had a set of
    /// unattended-fill permits of the same size, it is kept, so fills
    /// already running count against the same limit.
    pub fn new(
        upstreams: UpstreamSet,
        configs: &[UpstreamConfig],
        previous: Option<&Origins>,
    ) -> Self {
        let mut by_name = HashMap::new();
        for config in configs {
            let Some(upstream) = upstreams.by_name(&config.name) else {
                continue;
            };
            let share = config.policy.fills.unattended_fills as usize;
            let unattended = previous
                .and_then(|p| p.by_name.get(&config.name))
                .filter(|o| o.policy.fills.unattended_fills as usize == share)
                .map_or_else(
                    || Arc::new(Semaphore::new(share)),
                    |o| Arc::clone(&o.unattended),
                );
            let origin = Origin {
                upstream: Arc::clone(upstream),
                policy: Arc::new(config.policy.clone()),
                unattended,
                client_authorization: None,
            };
            by_name.insert(config.name.clone(), origin);
        }
        Self { upstreams, by_name }
    }

    /// The upstream clients, for routing.
    pub fn upstreams(&self) -> &UpstreamSet {
        &self.upstreams
    }

    /// The origin of `upstream` (one of [`Origins::upstreams`]).
    pub fn of(&self, upstream: &Upstream) -> Option<Origin> {
        self.by_name.get(upstream.name()).cloned()
    }
}
