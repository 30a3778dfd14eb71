//! The token relay of pass-through mode: a client's token request, sent to
//! berth's own token endpoint, goes on to the realm the upstream challenges
//! with, carrying the client's credentials, and upstream's answer comes
//! back as it is. The realm is learned from the upstream's `/v2/` (once per
//! mirror), and credentials go to it only under the same rule as berth's
//! own (`realm_allowed`).

use crate::challenge::{AuthChallenge, realm_allowed};
use crate::{Upstream, UpstreamError};
use bytes::Bytes;
use http::Method;

/// Largest token answer relayed.
const MAX_TOKEN_ANSWER: usize = 1 << 20;

/// A client's token request, after berth has fixed its scopes.
#[derive(Debug)]
pub struct TokenAsk<'a> {
    /// GET (credentials in `Authorization`) or POST (an OAuth2 form).
    pub method: Method,
    /// Every parameter but `service`, which becomes the upstream's own.
    pub params: &'a [(String, String)],
    /// The client's `Authorization`, if any (GET).
    pub authorization: Option<&'a str>,
}

/// What the realm answered.
#[derive(Debug)]
pub struct TokenReply {
    /// Its status.
    pub status: u16,
    /// Its `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Its body (at most 1 MiB).
    pub body: Bytes,
}

impl Upstream {
    /// Relay a client's token request to the upstream's token realm.
    pub async fn relay_token(&self, ask: &TokenAsk<'_>) -> Result<TokenReply, UpstreamError> {
        let (realm, service) = self.bearer_realm().await?;
        let mirror = &self.mirrors[0];
        if !realm_allowed(&realm, &mirror.url, &self.config.realm_hosts) {
            return Err(self.invalid(&format!(
                "token realm {} is not on the upstream's domain, scheme and port nor in realm_hosts; credentials are not relayed there",
                realm.host_str().unwrap_or("")
            )));
        }
        let mut params: Vec<(&str, &str)> = ask
            .params
            .iter()
            .filter(|(k, _)| k != "service")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(service) = &service {
            params.push(("service", service));
        }
        let builder = if ask.method == Method::POST {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            self.http
                .post(realm.clone())
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form)
        } else {
            let mut url = realm.clone();
            url.query_pairs_mut().extend_pairs(params.iter());
            let builder = self.http.get(url);
            match ask.authorization {
                Some(a) => builder.header(http::header::AUTHORIZATION, a),
                None => builder,
            }
        };
        let timeout = self.config.resilience.manifest_timeout;
        let answer = async {
            let sent = builder.send().await;
            let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
            self.metrics.upstream_request(self.name(), "token", status);
            let response = sent.map_err(|e| UpstreamError::from_transport(self.name(), &e))?;
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = crate::body::read_limited(response, MAX_TOKEN_ANSWER, self.name()).await?;
            Ok(TokenReply {
                status,
                content_type,
                body,
            })
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| UpstreamError::Timeout {
                upstream: self.name().to_owned(),
                detail: format!("token answer not complete within {timeout:?} (manifest_timeout)"),
            })?
    }

    /// The bearer realm and service of the first mirror: as challenged
    /// before, or learned now from an anonymous `/v2/`.
    async fn bearer_realm(&self) -> Result<(url::Url, Option<String>), UpstreamError> {
        let mirror = &self.mirrors[0];
        let known = mirror.auth.challenge();
        let challenge = match known {
            Some(c) => c,
            None => self
                .learn_challenge(mirror)
                .await?
                .ok_or_else(|| self.invalid("/v2/ answered without a bearer challenge"))?,
        };
        match challenge {
            AuthChallenge::Bearer { realm, service } => {
                let realm = url::Url::parse(&realm)
                    .map_err(|e| self.invalid(&format!("token realm {realm:?}: {e}")))?;
                if !matches!(realm.scheme(), "http" | "https") {
                    return Err(self.invalid("token realm is not http(s)"));
                }
                Ok((realm, service))
            }
            AuthChallenge::Basic => Err(self.invalid(
                "the upstream asks for Basic credentials, not tokens: it has no token realm to relay to",
            )),
        }
    }
}
