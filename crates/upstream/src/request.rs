//! One attempt at a request against one mirror: attach cached auth, answer
//! a 401 challenge once, follow redirects by hand, and classify the final
//! status. Retries and failover across mirrors live in `failover.rs`.

use crate::auth::TokenRequest;
use crate::body::read_limited;
use crate::challenge::parse_challenge;
use crate::mirror::Mirror;
use crate::redirect;
use crate::{Upstream, UpstreamError, Urgency};
use berth_oci::{ErrorCode, RepoName, Resource};
use http::{Method, StatusCode};

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// One request to make: method, repository (for the token scope), the path
/// below `/v2/`, what it asks for and the `Accept` lines to forward.
#[derive(Debug)]
pub(super) struct Call<'a> {
    method: Method,
    repo: &'a RepoName,
    path: &'a str,
    pub(super) kind: Resource,
    accept: &'a [String],
    range_from: Option<u64>,
    /// `None`: a client waits for it.
    pub(super) urgency: Option<&'a Urgency>,
    /// A client's own `Authorization` (pass-through mode): sent as it is,
    /// in place of berth's tokens, and a 401 is the client's to answer.
    client: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub(super) fn get(repo: &'a RepoName, path: &'a str, kind: Resource) -> Self {
        Self {
            method: Method::GET,
            repo,
            path,
            kind,
            accept: &[],
            range_from: None,
            urgency: None,
            client: None,
        }
    }

    pub(super) fn head(repo: &'a RepoName, path: &'a str, kind: Resource) -> Self {
        Self {
            method: Method::HEAD,
            ..Self::get(repo, path, kind)
        }
    }

    pub(super) fn accept(self, accept: &'a [String]) -> Self {
        Self { accept, ..self }
    }

    /// Wait for a request slot with `urgency` (see `slots.rs`).
    pub(super) fn urgency(self, urgency: &'a Urgency) -> Self {
        Self {
            urgency: Some(urgency),
            ..self
        }
    }

    /// Send the client's own `Authorization`, if it gave one.
    pub(super) fn client(self, client: Option<&'a str>) -> Self {
        Self { client, ..self }
    }

    /// Ask for the body from byte `offset` on (`Range: bytes=<offset>-`).
    pub(super) fn starting_at(self, offset: u64) -> Self {
        Self {
            range_from: (offset > 0).then_some(offset),
            ..self
        }
    }
}

impl Upstream {
    fn url_for(&self, mirror: &Mirror, path: &str) -> Result<url::Url, UpstreamError> {
        let base = mirror.label();
        url::Url::parse(&format!("{base}/v2/{path}"))
            .map_err(|e| self.invalid(&format!("cannot build URL: {e}")))
    }

    /// Send `call` to `mirror`, authenticating and following redirects;
    /// `Ok` only for a 2xx answer.
    pub(super) async fn attempt(
        &self,
        call: &Call<'_>,
        mirror: &Mirror,
    ) -> Result<reqwest::Response, UpstreamError> {
        let scope = format!("repository:{}:pull", call.repo);
        let tokens = TokenRequest {
            http: &self.http,
            upstream: self.name(),
            upstream_url: &mirror.url,
            realm_hosts: &self.config.realm_hosts,
            credentials: self.config.credentials.as_ref(),
            metrics: &self.metrics,
            timeout: self.config.resilience.manifest_timeout,
        };
        let url = self.url_for(mirror, call.path)?;
        if let Some(client) = call.client {
            let response = self.follow(call, url, Some(client)).await?;
            return self.classify(response, call.kind).await;
        }
        let mut authorization = mirror.auth.authorization(&scope, None, &tokens).await?;
        let mut answered_challenge = false;
        loop {
            let response = self
                .follow(call, url.clone(), authorization.as_deref())
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED || answered_challenge {
                return self.classify(response, call.kind).await;
            }
            answered_challenge = true;
            let challenge = response
                .headers()
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            let Some(challenge) = challenge else {
                return self.classify(response, call.kind).await;
            };
            mirror.auth.remember(challenge);
            authorization = mirror
                .auth
                .authorization(&scope, authorization.as_deref(), &tokens)
                .await?;
            if authorization.is_none() {
                return self.classify(response, call.kind).await;
            }
        }
    }

    /// Send and follow redirects (see `redirect` for which). `Authorization`
    /// goes only to the origin that was asked first.
    async fn follow(
        &self,
        call: &Call<'_>,
        mut url: url::Url,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let origin = url.origin();
        let private_network = self.config.private_network;
        for _ in 0..=MAX_REDIRECTS {
            let at_origin = url.origin() == origin;
            let client = if at_origin || private_network {
                &self.http
            } else {
                &self.public_http
            };
            let mut builder = client.request(call.method.clone(), url.clone());
            for accept in call.accept {
                builder = builder.header(http::header::ACCEPT, accept);
            }
            if let Some(a) = authorization.filter(|_| at_origin) {
                builder = builder.header(http::header::AUTHORIZATION, a);
            }
            if let Some(offset) = call.range_from {
                builder = builder.header(http::header::RANGE, format!("bytes={offset}-"));
            }
            let timeout = self.config.resilience.header_timeout;
            let asked = tokio::time::Instant::now();
            let Ok(sent) = tokio::time::timeout(timeout, builder.send()).await else {
                self.metrics
                    .upstream_request(self.name(), call.kind.as_str(), 0);
                return Err(UpstreamError::Timeout {
                    upstream: self.name().to_owned(),
                    detail: format!("no response headers within {timeout:?}"),
                });
            };
            let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
            self.metrics
                .upstream_request(self.name(), call.kind.as_str(), status);
            let response = sent.map_err(|e| UpstreamError::from_transport(self.name(), &e))?;
            if !at_origin && response.remote_addr().is_some_and(|a| self.own.is_own(a)) {
                return Err(self.invalid("blob redirected to berth's own listener"));
            }
            self.observe(call, asked.elapsed(), &response);
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| self.invalid("redirect without a Location header"))?;
            let next = url
                .join(location)
                .map_err(|e| self.invalid(&format!("redirect to an invalid URL: {e}")))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(self.invalid("redirect to a non-HTTP URL"));
            }
            if next.origin() != origin {
                let kind = call.kind.as_str();
                redirect::check_hop(self.name(), kind, private_network, &self.own, &next).await?;
            }
            url = next;
        }
        Err(self.invalid("too many redirects"))
    }

    /// The response time, and the pulls left that the upstream announces
    /// (`ratelimit-remaining: 76;w=21600` on Docker Hub).
    fn observe(&self, call: &Call<'_>, took: std::time::Duration, response: &reqwest::Response) {
        let m = &self.metrics.upstream;
        m.latency
            .get_or_create(&berth_metrics::LatencyLabels {
                upstream: self.name().to_owned(),
                kind: call.kind.as_str(),
            })
            .observe(took.as_secs_f64());
        let remaining = response
            .headers()
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next()?.trim().parse::<i64>().ok());
        if let Some(n) = remaining {
            m.ratelimit_remaining
                .get_or_create(&berth_metrics::NameLabels {
                    upstream: self.name().to_owned(),
                })
                .set(n);
        }
    }

    async fn classify(
        &self,
        response: reqwest::Response,
        resource: Resource,
    ) -> Result<reqwest::Response, UpstreamError> {
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let upstream = self.name().to_owned();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let (code, message) = error_body(response).await;
        Err(match status {
            404 => UpstreamError::NotFound {
                upstream,
                resource,
                code: code.as_deref().and_then(ErrorCode::from_wire),
            },
            401 | 403 => UpstreamError::Denied {
                upstream,
                status,
                detail: message.unwrap_or_else(|| "no details".to_owned()),
            },
            429 => UpstreamError::RateLimited {
                upstream,
                retry_after,
            },
            _ => UpstreamError::Status { upstream, status },
        })
    }
}

/// The first OCI error code and message of an error body, if it has one.
async fn error_body(response: reqwest::Response) -> (Option<String>, Option<String>) {
    let Ok(body) = read_limited(response, 64 << 10, "").await else {
        return (None, None);
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (None, None);
    };
    let first = &v["errors"][0];
    (
        first["code"].as_str().map(str::to_owned),
        first["message"].as_str().map(str::to_owned),
    )
}
