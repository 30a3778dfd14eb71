//! Upstream authentication state: the last challenge each upstream sent,
//! and bearer tokens cached per scope until just before they expire, so a
//! warm pull costs no token request.

use crate::config::Credentials;
use crate::upstream::UpstreamError;
use crate::upstream::challenge::{Challenge, realm_allowed};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Lifetime assumed when a token answer has no `expires_in` (per the
/// distribution token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// Per-upstream auth state.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// Serialises token fetches so concurrent cold requests share one.
    fetching: tokio::sync::Mutex<()>,
}

/// Everything needed to fetch a token from a realm.
pub(super) struct TokenRequest<'a> {
    pub(super) http: &'a reqwest::Client,
    pub(super) upstream: &'a str,
    pub(super) upstream_url: &'a url::Url,
    pub(super) realm_hosts: &'a [String],
    pub(super) credentials: Option<&'a Credentials>,
}

pub(super) fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

impl AuthState {
    pub(super) fn remember(&self, challenge: Challenge) {
        if let Ok(mut c) = self.challenge.lock() {
            *c = Some(challenge);
        }
    }

    fn cached(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        let t = tokens.get(scope)?;
        (Instant::now() < t.refresh_at).then(|| t.value.clone())
    }

    /// The `Authorization` value to send for `scope` without asking
    /// anyone: a cached token, or Basic credentials for a Basic upstream.
    pub(super) fn header(&self, scope: &str, creds: Option<&Credentials>) -> Option<String> {
        let challenge = self.challenge.lock().ok()?.clone()?;
        match challenge {
            Challenge::Basic => creds.map(basic_header),
            Challenge::Bearer { .. } => self.cached(scope).map(|t| format!("Bearer {t}")),
        }
    }

    /// The `Authorization` value for `scope`, fetching a token if the
    /// upstream uses bearer auth and none is cached. `None` when the
    /// upstream never challenged.
    pub(super) async fn authorize(
        &self,
        scope: &str,
        req: &TokenRequest<'_>,
    ) -> Result<Option<String>, UpstreamError> {
        let challenge = self.challenge.lock().ok().and_then(|c| c.clone());
        let (realm, service) = match challenge {
            None => return Ok(None),
            Some(Challenge::Basic) => return Ok(req.credentials.map(basic_header)),
            Some(Challenge::Bearer { realm, service }) => (realm, service),
        };
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(t) = self.cached(scope) {
            return Ok(Some(format!("Bearer {t}")));
        }
        let (token, lifetime) = fetch_token(req, &realm, service.as_deref(), scope).await?;
        // Refresh a little before expiry: 10% early, at least 5 seconds.
        let margin = (lifetime / 10).max(Duration::from_secs(5));
        let refresh_at = Instant::now() + lifetime.saturating_sub(margin);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(
                scope.to_owned(),
                CachedToken {
                    value: token.clone(),
                    refresh_at,
                },
            );
        }
        Ok(Some(format!("Bearer {token}")))
    }

    /// Forget a cached token that upstream refused.
    pub(super) fn forget(&self, scope: &str) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(scope);
        }
    }
}

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
            "token realm is not on the upstream's domain nor in realm_hosts; asking anonymously"
        ),
        None => {}
    }
    let response = builder
        .send()
        .await
        .map_err(|e| UpstreamError::from_transport(req.upstream, &e))?;
    let status = response.status().as_u16();
    match status {
        200..=299 => {}
        401 | 403 => {
            return Err(UpstreamError::Denied {
                upstream: req.upstream.to_owned(),
                status,
                detail: "the token service refused the credentials".to_owned(),
            });
        }
        429 => {
            return Err(UpstreamError::RateLimited {
                upstream: req.upstream.to_owned(),
                retry_after: None,
            });
        }
        _ => {
            return Err(UpstreamError::Status {
                upstream: req.upstream.to_owned(),
                status,
            });
        }
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| UpstreamError::from_transport(req.upstream, &e))?;
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("token answer is not JSON: {e}")))?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("token answer has neither token nor access_token".to_owned()))?;
    let lifetime = answer
        .expires_in
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}
