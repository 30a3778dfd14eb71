//! The edge's side of the access policy: a refusal from `berth-access`
//! becomes its answer (401 with a login challenge, 403 `DENIED` naming
//! the rule, 429 with `Retry-After`), and the checks run in their order:
//! the client's rate first, then its login, then the rules once the
//! request is routed.

use crate::error::ApiError;
use berth_access::{Access, Facts, Refusal};
use berth_oci::ErrorCode;
use http::request::Parts;
use http::{StatusCode, header};
use std::net::IpAddr;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthorized(why) => {
                let mut e = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, why);
                e.login_challenge = true;
                e
            }
            Refusal::Denied(rule) => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Denied,
                format!("denied by access rule {rule:?}"),
            ),
            Refusal::TooManyRequests(seconds) => ApiError::too_many_requests(
                seconds,
                format!("too many requests from this client; retry in {seconds} s"),
            ),
        }
    }
}

/// Who is asking: the client's address and login, once admitted.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) ip: IpAddr,
    /// The connection's own peer (a proxy, perhaps).
    pub(crate) peer: IpAddr,
    pub(crate) user: Option<String>,
}

/// Rate and login checks, before the request is routed. `ping` is a
/// request for `/v2/`.
pub(crate) async fn caller(
    access: &Access,
    peer: IpAddr,
    request: &Parts,
    ping: bool,
) -> Result<Caller, ApiError> {
    let ip = access.client(peer, &request.headers);
    access.admit(ip).await?;
    let user = access.login(ip, &request.headers, ping).await?;
    Ok(Caller { ip, peer, user })
}

/// What a routed request asks for, as the access rules see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) upstream: &'a str,
    /// As routed (`library/nginx`).
    pub(crate) repository: &'a str,
    pub(crate) endpoint: &'a crate::route::Endpoint,
}

/// The access rules, for a request routed to `target` (none for `/v2/`
/// and the token endpoint). Patterns see every `User-Agent` value and the
/// canonical forms of the path, never the path as the client spelled it:
/// `/v2/nginx/…`, `/v2/docker.io/nginx/…` and `?ns=docker.io` are all
/// `/v2/library/nginx/…` and `/v2/docker.io/library/nginx/…`.
pub(crate) fn rules(
    access: &Access,
    caller: &Caller,
    request: &Parts,
    target: Option<Target<'_>>,
) -> Result<(), ApiError> {
    let mut user_agents: Vec<String> = request
        .headers
        .get_all(header::USER_AGENT)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if user_agents.is_empty() {
        user_agents.push(String::new());
    }
    let paths = match target {
        Some(t) => {
            let endpoint = t.endpoint.path();
            vec![
                format!("/v2/{}/{endpoint}", t.repository),
                format!("/v2/{}/{}/{endpoint}", t.upstream, t.repository),
            ]
        }
        None => vec![request.uri.path().to_owned()],
    };
    // Looked up only when a rule asks.
    let region = access
        .wants_region()
        .then(|| access.region(caller.peer, caller.ip, &request.headers))
        .flatten();
    access.rules(&Facts {
        ip: caller.ip,
        user_agents: &user_agents,
        paths: &paths,
        upstream: target.map(|t| t.upstream),
        repository: target.map(|t| t.repository),
        user: caller.user.as_deref(),
        region: region.as_deref(),
    })?;
    Ok(())
}
