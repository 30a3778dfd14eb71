//! Upstream authentication state: the last challenge each upstream sent,
//! and bearer tokens cached per scope so a warm pull costs no token request.
//! Once an upstream has challenged, a request for a scope with no token
//! fetches one first: a cold pull of a new repository costs one token
//! request and no 401, which on a far link is a round trip saved.
//!
//! A token is refreshed ahead of its expiry, once: the request that finds it
//! due fetches the next one while the other requests for that scope wait for
//! that fetch (single flight per scope; unrelated scopes never wait for each
//! other). A 401 drops the cached token only when it is the token that was
//! refused, so a token another request has just fetched survives.

use crate::UpstreamError;
use crate::challenge::{AuthChallenge, realm_allowed};
use base64::Engine as _;
use berth_config::Credentials;
use berth_metrics::Metrics;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Lifetime assumed when a token answer has no `expires_in` (per the
/// distribution token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Largest token answer accepted.
const MAX_TOKEN_ANSWER: usize = 1 << 20;
/// Scopes remembered before idle ones without a usable token are dropped.
const MAX_SCOPES: usize = 4096;

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// A token as the `Authorization` value that carries it.
#[derive(Debug, Clone)]
struct CachedToken {
    header: String,
    refresh_at: Instant,
}

/// The token of one scope and the lock that makes its fetches single-flight.
#[derive(Debug, Default)]
struct ScopeTokens {
    current: Mutex<Option<CachedToken>>,
    /// Held while a token for this scope is being fetched.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch failed and why, for the requests that waited
    /// for it: they share its outcome instead of asking again in turn.
    failed: Mutex<Option<(Instant, UpstreamError)>>,
}

impl ScopeTokens {
    /// The cached token while it is not yet due for refresh.
    fn fresh(&self) -> Option<String> {
        let current = self.current.lock().ok()?;
        let t = current.as_ref()?;
        (Instant::now() < t.refresh_at).then(|| t.header.clone())
    }

    /// Drop the cached token if it is `refused`, and only then.
    fn drop_if(&self, refused: &str) {
        if let Ok(mut current) = self.current.lock()
            && current.as_ref().is_some_and(|t| t.header == refused)
        {
            *current = None;
        }
    }
}

/// Per-mirror auth state.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    challenge: Mutex<Option<AuthChallenge>>,
    scopes: Mutex<HashMap<String, Arc<ScopeTokens>>>,
}

/// Everything needed to fetch a token from a realm.
pub(super) struct TokenRequest<'a> {
    pub(super) http: &'a reqwest::Client,
    pub(super) upstream: &'a str,
    pub(super) upstream_url: &'a url::Url,
    pub(super) realm_hosts: &'a [String],
    pub(super) credentials: Option<&'a Credentials>,
    pub(super) metrics: &'a Metrics,
    /// Limit for the whole token answer, headers and body.
    pub(super) timeout: Duration,
}

pub(super) fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// How long a token is used: until 10% of its life, and at least 5 s, are
/// left; but at least 1 s, or 90% of a life shorter than that, so short
/// tokens are not fetched for every request.
fn usable_for(lifetime: Duration) -> Duration {
    let early = Duration::from_secs(5).min(lifetime.saturating_sub(Duration::from_secs(1)));
    lifetime.saturating_sub((lifetime / 10).max(early))
}

impl AuthState {
    pub(super) fn remember(&self, challenge: AuthChallenge) {
        if let Ok(mut c) = self.challenge.lock() {
            *c = Some(challenge);
        }
    }

    pub(super) fn challenge(&self) -> Option<AuthChallenge> {
        self.challenge.lock().ok()?.clone()
    }

    /// The token state of `scope`, created on first use.
    fn scope(&self, scope: &str) -> Option<Arc<ScopeTokens>> {
        let mut scopes = self.scopes.lock().ok()?;
        if let Some(s) = scopes.get(scope) {
            return Some(Arc::clone(s));
        }
        if scopes.len() >= MAX_SCOPES {
            // Keep scopes in use or with a usable token; when all are,
            // drop every idle one.
            scopes.retain(|_, s| Arc::strong_count(s) > 1 || s.fresh().is_some());
            if scopes.len() >= MAX_SCOPES {
                scopes.retain(|_, s| Arc::strong_count(s) > 1);
            }
        }
        let s = Arc::new(ScopeTokens::default());
        scopes.insert(scope.to_owned(), Arc::clone(&s));
        Some(s)
    }

    /// The bearer realm and service upstream challenged with, or the
    /// `Authorization` value to use without a token: Basic credentials for a
    /// Basic upstream, nothing before any challenge.
    fn bearer_realm(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<(String, Option<String>), Option<String>> {
        match self.challenge() {
            None => Err(None),
            Some(AuthChallenge::Basic) => Err(req.credentials.map(basic_header)),
            Some(AuthChallenge::Bearer { realm, service }) => Ok((realm, service)),
        }
    }

    /// The `Authorization` value to send for `scope`: Basic credentials
    /// for a Basic upstream; for a bearer upstream a token for the scope,
    /// cached or fetched now (a scope new to berth gets its token before
    /// its first request, not after a 401). After upstream refused
    /// `refused`, that token is forgotten first (only it: a token another
    /// request fetched meanwhile is shared). `None` before the upstream
    /// challenged at all.
    pub(super) async fn authorization(
        &self,
        scope: &str,
        refused: Option<&str>,
        req: &TokenRequest<'_>,
    ) -> Result<Option<String>, UpstreamError> {
        let (realm, service) = match self.bearer_realm(req) {
            Ok(bearer) => bearer,
            Err(header) => return Ok(header),
        };
        let Some(tokens) = self.scope(scope) else {
            return Ok(None);
        };
        if let Some(refused) = refused {
            tokens.drop_if(refused);
        }
        if let Some(header) = tokens.fresh() {
            return Ok(Some(header));
        }
        let header = fetch_once(&tokens, req, &realm, service.as_deref(), scope).await?;
        Ok(Some(header))
    }
}

/// Fetch a token for a scope unless another request is already doing it:
/// then wait for that fetch and share its token or its failure.
async fn fetch_once(
    tokens: &ScopeTokens,
    req: &TokenRequest<'_>,
    realm: &str,
    service: Option<&str>,
    scope: &str,
) -> Result<String, UpstreamError> {
    let waiting_since = Instant::now();
    let _single_flight = tokens.fetching.lock().await;
    if let Some(header) = tokens.fresh() {
        return Ok(header);
    }
    if let Ok(failed) = tokens.failed.lock()
        && let Some((at, e)) = failed.as_ref()
        && *at >= waiting_since
    {
        return Err(e.clone());
    }
    let asked_at = Instant::now();
    match fetch_token(req, realm, service, scope).await {
        Ok((token, lifetime)) => {
            let header = format!("Bearer {token}");
            if let Ok(mut current) = tokens.current.lock() {
                *current = Some(CachedToken {
                    header: header.clone(),
                    refresh_at: asked_at + usable_for(lifetime),
                });
            }
            Ok(header)
        }
        Err(e) => {
            if let Ok(mut failed) = tokens.failed.lock() {
                *failed = Some((Instant::now(), e.clone()));
            }
            Err(e)
        }
    }
}

/// One request to the token realm, its whole answer bounded by
/// `req.timeout`; counted in `berth_upstream_requests{kind="token"}`.
async fn fetch_token(
    req: &TokenRequest<'_>,
    realm: &str,
    service: Option<&str>,
    scope: &str,
) -> Result<(String, Duration), UpstreamError> {
    let invalid = |detail: String| UpstreamError::Invalid {
        upstream: req.upstream.to_owned(),
        detail,
    };
    let mut url =
        url::Url::parse(realm).map_err(|e| invalid(format!("token realm {realm:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("token realm {realm:?} is not http(s)")));
    }
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        q.append_pair("scope", scope);
    }
    let mut builder = req.http.get(url.clone());
    match req.credentials {
        Some(c) if realm_allowed(&url, req.upstream_url, req.realm_hosts) => {
            builder = builder.header(http::header::AUTHORIZATION, basic_header(c));
        }
        Some(_) => tracing::warn!(
            upstream = req.upstream,
            realm = %url.host_str().unwrap_or(""),
            realm_port = url.port_or_known_default().unwrap_or(0),
            "token realm is not on the upstream's domain, scheme and port nor in realm_hosts; asking anonymously"
        ),
        None => {}
    }
    let answer = async {
        let sent = builder.send().await;
        let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
        req.metrics.upstream_request(req.upstream, "token", status);
        let response = sent.map_err(|e| UpstreamError::from_transport(req.upstream, &e))?;
        token_status(req.upstream, status)?;
        crate::body::read_limited(response, MAX_TOKEN_ANSWER, req.upstream).await
    };
    let body = tokio::time::timeout(req.timeout, answer)
        .await
        .map_err(|_| UpstreamError::Timeout {
            upstream: req.upstream.to_owned(),
            detail: format!(
                "token answer not complete within {:?} (manifest_timeout)",
                req.timeout
            ),
        })??;
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("token answer is not JSON: {e}")))?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("token answer has neither token nor access_token".to_owned()))?;
    let lifetime = answer
        .expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}

/// The error for a token service's non-2xx status.
fn token_status(upstream: &str, status: u16) -> Result<(), UpstreamError> {
    let upstream = upstream.to_owned();
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(UpstreamError::Denied {
            upstream,
            status,
            detail: "the token service refused the credentials".to_owned(),
        }),
        429 => Err(UpstreamError::RateLimited {
            upstream,
            retry_after: None,
        }),
        _ => Err(UpstreamError::Status { upstream, status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_used_for_most_of_their_life_and_at_least_a_second() {
        let s = Duration::from_secs;
        assert_eq!(usable_for(s(300)), s(270));
        assert_eq!(usable_for(s(12)), s(7));
        assert_eq!(usable_for(s(6)), s(1));
        assert_eq!(usable_for(s(2)), s(1));
        assert_eq!(usable_for(s(1)), Duration::from_millis(900));
    }

    #[test]
    fn only_the_refused_token_is_dropped() {
        let tokens = ScopeTokens::default();
        let later = Instant::now() + Duration::from_secs(60);
        *tokens.current.lock().unwrap() = Some(CachedToken {
            header: "Bearer new".into(),
            refresh_at: later,
        });
        tokens.drop_if("Bearer old");
        assert_eq!(tokens.fresh().as_deref(), Some("Bearer new"));
        tokens.drop_if("Bearer new");
        assert_eq!(tokens.fresh(), None);
    }
}
