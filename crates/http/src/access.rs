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
    access.admit(ip)?;
    let user = access.login(ip, &request.headers, ping).await?;
    Ok(Caller { ip, peer, user })
}

/// The access rules, for a request routed to `upstream` and `repository`
/// (neither for `/v2/`).
pub(crate) fn rules(
    access: &Access,
    caller: &Caller,
    request: &Parts,
    upstream: Option<&str>,
    repository: Option<&str>,
) -> Result<(), ApiError> {
    let user_agent = request
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Looked up only when a rule asks.
    let region = access
        .wants_region()
        .then(|| access.region(caller.peer, caller.ip, &request.headers))
        .flatten();
    access.rules(&Facts {
        ip: caller.ip,
        user_agent,
        path: request.uri.path(),
        upstream,
        repository,
        user: caller.user.as_deref(),
        region: region.as_deref(),
    })?;
    Ok(())
}
