//! Who may use the mirror, decided before anything is served: the
//! client's address (`client`), logins against an htpasswd file
//! (`htpasswd`), rate limits per client IP, per user and on failed logins
//! (`limiter`), kept over a cluster's replicas when it shares its counters
//! (`fleet`), and access rules (`rules`). The edge asks [`Access`] and
//! turns a [`Refusal`] into its answer.
//!
//! Uses `berth-config` (what `[auth]`, `[limits]` and `[[access.rules]]`
//! say).

mod client;
mod fleet;
mod geo;
mod htpasswd;
mod limiter;
mod rules;
mod verifications;

#[cfg(test)]
mod tests;

pub use client::client_ip;
pub use fleet::FleetBuckets;
pub use geo::{GeoIp, GeoIpError};
pub use htpasswd::{Htpasswd, HtpasswdError};
pub use limiter::Limiter;
pub use rules::{ANONYMOUS, Facts, denying};

use base64::Engine as _;
use berth_config::{AccessRule, AccessSettings, Anonymous};
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Failed logins one IP may make in a row, then one more a second.
const FAILED_LOGIN_BURST: u32 = 10;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no login, or a wrong one; the reason is safe to show.
    Unauthorized(&'static str),
    /// 403 `DENIED`, by the named rule.
    Denied(String),
    /// 429, with the seconds to wait.
    TooManyRequests(u64),
}

/// A file the access policy needs that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The htpasswd file.
    #[error(transparent)]
    Htpasswd(#[from] HtpasswdError),
    /// The GeoIP database.
    #[error(transparent)]
    GeoIp(#[from] GeoIpError),
}

/// The access policy in force.
#[derive(Debug)]
pub struct Access {
    settings: AccessSettings,
    htpasswd: Option<Arc<Htpasswd>>,
    geoip: Option<GeoIp>,
    per_ip: Option<fleet::Bucket<IpAddr>>,
    per_user: Option<fleet::Bucket<String>>,
    failed_logins: fleet::Bucket<IpAddr>,
    /// The cluster's shared counters, when there is one.
    fleet: Option<Arc<dyn FleetBuckets>>,
    verifications: verifications::Verifications,
}

fn retry_after(wait: Duration) -> Refusal {
    Refusal::TooManyRequests(wait.as_secs() + 1)
}

impl Access {
    /// The policy `settings` describe; reads the htpasswd file and the
    /// GeoIP database.
    pub fn load(settings: &AccessSettings) -> Result<Self, AccessError> {
        let htpasswd = match &settings.auth.htpasswd_file {
            Some(path) => Some(Arc::new(Htpasswd::load(path)?)),
            None => None,
        };
        let geoip = match &settings.geoip_file {
            Some(path) => Some(GeoIp::load(path)?),
            None => None,
        };
        let limits = &settings.limits;
        Ok(Self {
            settings: settings.clone(),
            htpasswd,
            geoip,
            per_ip: limits
                .rate
                .map(|r| fleet::Bucket::new("ip", r, limits.burst)),
            per_user: limits
                .rate
                .map(|r| fleet::Bucket::new("user", r, limits.burst)),
            failed_logins: fleet::Bucket::new("login", 1, FAILED_LOGIN_BURST),
            fleet: None,
            verifications: verifications::Verifications::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            ),
        })
    }

    /// Keep the limits over a cluster's replicas through `fleet`.
    #[must_use]
    pub fn with_fleet(mut self, fleet: Option<Arc<dyn FleetBuckets>>) -> Self {
        self.fleet = fleet;
        self
    }

    /// The cluster's shared counters this policy uses, if any (a reloaded
    /// policy keeps them).
    pub fn fleet(&self) -> Option<Arc<dyn FleetBuckets>> {
        self.fleet.clone()
    }

    /// Whether clients can log in at all.
    pub fn logins(&self) -> bool {
        self.htpasswd.is_some()
    }

    /// The client's address, given the connection's peer.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, headers, &self.settings.limits.trusted_proxies)
    }

    /// Whether any rule asks for the client's country.
    pub fn wants_region(&self) -> bool {
        self.settings.rules.iter().any(AccessRule::wants_region)
    }

    /// The client's country: as a trusted proxy names it in the configured
    /// `region_header`, else as the GeoIP database has the client's
    /// address (`client`, already resolved behind trusted proxies).
    pub fn region(&self, peer: IpAddr, client: IpAddr, headers: &HeaderMap) -> Option<String> {
        let trusted = || {
            self.settings
                .limits
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&peer))
        };
        let from_proxy = self
            .settings
            .region_header
            .as_ref()
            .filter(|_| trusted())
            .and_then(|header| headers.get(header))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|code| code.len() == 2)
            .map(str::to_owned);
        from_proxy.or_else(|| self.geoip.as_ref()?.country(client))
    }

    /// Count one request from `ip` against its rate.
    pub async fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        match &self.per_ip {
            Some(bucket) => bucket
                .take(self.fleet.as_deref(), &ip)
                .await
                .map_err(retry_after),
            None => Ok(()),
        }
    }

    /// The user a request logs in as (`None`: anonymous), checking its
    /// `Authorization: Basic` against the htpasswd file. `ping` is a
    /// request for `/v2/`, where a client without a login is asked for one
    /// whenever logins exist (that is how `docker login` checks them).
    pub async fn login(
        &self,
        ip: IpAddr,
        headers: &HeaderMap,
        ping: bool,
    ) -> Result<Option<String>, Refusal> {
        let Some(htpasswd) = &self.htpasswd else {
            return Ok(None);
        };
        let basic = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "));
        let decoded = basic.map(|basic| {
            base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        });
        // Clients without credentials may still answer a Basic challenge,
        // with an empty user and password (skopeo and podman do): that is
        // no login, not a wrong one.
        if basic.is_none() || decoded.as_ref().is_some_and(|d| d.as_deref() == Some(":")) {
            if ping || self.settings.auth.anonymous == Anonymous::None {
                return Err(Refusal::Unauthorized("log in to use this mirror"));
            }
            return Ok(None);
        }
        let decoded = decoded.flatten();
        let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(Refusal::Unauthorized(
                "the Authorization header is not user:password in Basic form",
            ));
        };
        if !htpasswd.remembered(user, password) {
            self.verify(htpasswd, ip, user, password).await?;
        }
        if let Some(bucket) = &self.per_user {
            bucket
                .take(self.fleet.as_deref(), &user.to_owned())
                .await
                .map_err(retry_after)?;
        }
        Ok(Some(user.to_owned()))
    }

    /// Check a login that is not remembered. The attempt counts against
    /// the address's failed logins when it starts (and is given back if
    /// it succeeds), so concurrent guesses cannot all run before the
    /// first failure is counted; the bcrypt itself waits for a turn.
    async fn verify(
        &self,
        htpasswd: &Arc<Htpasswd>,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<(), Refusal> {
        if self
            .failed_logins
            .take(self.fleet.as_deref(), &ip)
            .await
            .is_err()
        {
            return Err(Refusal::TooManyRequests(FAILED_LOGIN_BURST.into()));
        }
        let ok = match self.verifications.turn(ip).await {
            // A concurrent request with the same login may have checked it
            // while this one waited.
            Some(_turn) if htpasswd.remembered(user, password) => true,
            Some(_turn) => {
                let checker = Arc::clone(htpasswd);
                let (name, password) = (user.to_owned(), password.to_owned());
                tokio::task::spawn_blocking(move || checker.check(&name, &password))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        if ok {
            self.failed_logins
                .give_back(self.fleet.as_deref(), &ip)
                .await;
            return Ok(());
        }
        tracing::info!(%ip, user, "login refused");
        Err(Refusal::Unauthorized("wrong user name or password"))
    }

    /// The verdict of the access rules.
    pub fn rules(&self, facts: &Facts<'_>) -> Result<(), Refusal> {
        match denying(&self.settings.rules, facts) {
            Some(rule) => Err(Refusal::Denied(rule.name.clone())),
            None => Ok(()),
        }
    }
}
