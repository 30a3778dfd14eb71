//! Pass-through mode at the edge. A client of a pass-through upstream
//! logs in to that upstream through berth: `/v2/` and every refusal answer
//! 401 with a bearer challenge whose realm is berth's own token endpoint
//! (`/token`, also `/auth/token`), which relays the client's credentials to
//! the upstream's realm through the engine (`PullService::relay_token`,
//! which rewrites scopes from the names clients use to the names upstream
//! knows, `library/` on Docker Hub, and asks for push only where push is
//! on).
//!
//! The realm berth emits never carries a host a client made up: it is the
//! request's `Host` only when that is the configured `domain` (or a host
//! below it) or the address the client connected to, and otherwise that
//! address. `X-Forwarded-Host` is never read.

use crate::access;
use crate::error::ApiError;
use crate::server::ConnInfo;
use crate::{HttpState, api_headers};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use berth_access::Limiter;
use berth_config::AuthMode;
use berth_oci::{ErrorCode, RepoName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::net::IpAddr;
use std::sync::Arc;

/// Largest token request body read (an OAuth2 form).
const MAX_TOKEN_FORM: usize = 64 << 10;

/// `http(s)://host[:port]` clients reach this mirror at.
pub(crate) fn public_base(
    domain: Option<&str>,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> String {
    let scheme = if conn.is_some_and(|c| c.https) {
        "https"
    } else {
        "http"
    };
    let local = conn.and_then(|c| c.local);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|h| {
            let name = h
                .rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                .map_or(*h, |(name, _)| name)
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let ours = domain.is_some_and(|d| name == d || name.ends_with(&format!(".{d}")));
            let connected = local.is_some_and(|l| *h == l.to_string());
            (ours || connected) && h.bytes().all(|b| b.is_ascii_graphic())
        });
    match (host, local) {
        (Some(host), _) => format!("{scheme}://{host}"),
        (None, Some(local)) => format!("{scheme}://{local}"),
        (None, None) => format!("{scheme}://127.0.0.1"),
    }
}

/// The 401 a pass-through client gets: a bearer challenge naming berth's
/// token endpoint, the upstream as the service, and the scope, if any.
pub(crate) fn unauthorized(
    base: &str,
    upstream: &str,
    scope: Option<(&RepoName, &str)>,
    message: impl Into<String>,
) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
    let mut value = format!("Bearer realm=\"{base}/token\",service=\"{upstream}\"");
    if let Some((name, actions)) = scope {
        value.push_str(&format!(",scope=\"repository:{name}:{actions}\""));
    }
    e.bearer_challenge = HeaderValue::from_str(&value).ok();
    e
}

/// An upstream refusal for a pass-through client becomes a 401 that sends
/// it to log in; other errors stay as they are.
pub(crate) fn refusal_to_challenge(
    e: ApiError,
    base: &str,
    upstream: &str,
    name: &RepoName,
) -> ApiError {
    if e.code != ErrorCode::Denied {
        return e;
    }
    unauthorized(
        base,
        upstream,
        Some((name, "pull")),
        format!(
            "upstream {upstream} wants credentials for {name}: log in to this mirror with your {upstream} account"
        ),
    )
}

/// `/token` and `/auth/token`: relay a token request to the upstream the
/// `service` parameter names.
pub(crate) async fn token(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let method = request.method().clone();
    let response = relay(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    // The parameters and credentials stay out of the log.
    tracing::info!(route = "token", %method, status = response.status().as_u16(), "served");
    response
}

async fn relay(state: &HttpState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::GET && parts.method != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            "the token endpoint takes GET or POST",
        ));
    }
    let peer = parts
        .extensions
        .get::<ConnInfo>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.peer.ip());
    let live = state.live();
    let caller = access::caller(&live.access, peer, &parts, false).await?;
    access::rules(&live.access, &caller, &parts, None)?;
    state.relay_budget.token(caller.ip)?;
    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if parts.method == Method::POST {
        let form = axum::body::to_bytes(body, MAX_TOKEN_FORM)
            .await
            .map_err(|_| bad_request("the token request body is larger than 64 KiB"))?;
        params.extend(url::form_urlencoded::parse(&form).into_owned());
    }
    let service = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("service"))
        .map(|(_, v)| v.clone())
        .ok_or_else(|| bad_request("the token request names no service"))?;
    let upstream = live
        .origins
        .upstreams()
        .by_name(&service)
        .filter(|u| u.config().auth_mode == AuthMode::Passthrough)
        .ok_or_else(|| {
            let shown: String = service.chars().take(64).collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NameUnknown,
                format!("service {shown:?} is no pass-through registry of this mirror"),
            )
        })?;
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let reply = state
        .pull
        .relay_token(upstream, parts.method.clone(), params, authorization)
        .await?;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = reply
        .content_type
        .filter(|t| t.starts_with("application/json"))
        .unwrap_or_else(|| "application/json".to_owned());
    let mut response = (status, reply.body).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    api_headers(headers);
    Ok(response)
}

/// Requests per client address that reach upstream on credentials berth
/// cannot vouch for: pass-through requests whose credential upstream has
/// not confirmed yet, and token relays. A real client spends a few (one
/// per login, one per repository); made-up tokens by the thousand get 429
/// instead of as many upstream requests.
#[derive(Debug)]
pub(crate) struct RelayBudget {
    unconfirmed: Limiter<IpAddr>,
    tokens: Limiter<IpAddr>,
}

/// Requests a client may make at once on unconfirmed credentials (then
/// `RELAY_RATE` a second), and token relays likewise.
const RELAY_BURST: u32 = 20;
const RELAY_RATE: u32 = 2;

impl Default for RelayBudget {
    fn default() -> Self {
        Self {
            unconfirmed: Limiter::new(RELAY_RATE, RELAY_BURST),
            tokens: Limiter::new(RELAY_RATE, RELAY_BURST),
        }
    }
}

impl RelayBudget {
    /// Spend one request on a credential upstream has not confirmed.
    pub(crate) fn unconfirmed(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.unconfirmed.take(&ip).map_err(|wait| {
            let seconds = wait.as_secs() + 1;
            ApiError::too_many_requests(
                seconds,
                format!("too many requests with credentials upstream has not confirmed; retry in {seconds} s"),
            )
        })
    }

    /// Spend one token relay.
    pub(crate) fn token(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.tokens.take(&ip).map_err(|wait| {
            let seconds = wait.as_secs() + 1;
            ApiError::too_many_requests(
                seconds,
                format!("too many token requests from this client; retry in {seconds} s"),
            )
        })
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_realm_never_carries_a_made_up_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("evil.example"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        assert_eq!(
            public_base(Some("mirror.example"), &headers, None),
            "http://127.0.0.1"
        );
        headers.insert(
            header::HOST,
            HeaderValue::from_static("ghcr.mirror.example:5000"),
        );
        assert_eq!(
            public_base(Some("mirror.example"), &headers, None),
            "http://ghcr.mirror.example:5000"
        );
        headers.insert(header::HOST, HeaderValue::from_static("evilmirror.example"));
        assert_eq!(
            public_base(Some("mirror.example"), &headers, None),
            "http://127.0.0.1"
        );
    }
}
