//! Who may read the operational routes (`/stats`, `/routes`, `/metrics`,
//! `/dashboard`) where they share the public port: they tell repository
//! names, upstream URLs and the digests of downloads in flight, so they
//! obey the same policy as the registry API. When logins exist, each
//! request needs one (or the admin token, as a bearer); the rate limit and
//! the access rules apply to every request. `/health` is not among them
//! and stays open.

use crate::HttpState;
use crate::access::{self, Caller};
use crate::error::ApiError;
use crate::server::ConnInfo;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_config::Secret;
use std::sync::Arc;

/// What the guard needs.
#[derive(Debug)]
struct Guard {
    state: Arc<HttpState>,
    admin_token: Option<Secret>,
}

/// `/metrics`, `/stats`, `/routes` and `/dashboard` for the public port,
/// behind the access policy (`admin_token` also lets a request in).
pub fn public_ops_routes(state: Arc<HttpState>, admin_token: Option<Secret>) -> Router {
    let metrics = Arc::clone(&state.metrics);
    let guard = Arc::new(Guard {
        state: Arc::clone(&state),
        admin_token,
    });
    crate::metrics_routes(metrics)
        .merge(crate::ops_routes(state))
        .layer(axum::middleware::from_fn_with_state(guard, admit))
}

async fn admit(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match check(&guard, &parts).await {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
    }
}

async fn check(guard: &Guard, parts: &http::request::Parts) -> Result<(), ApiError> {
    let live = guard.state.live();
    let peer = parts
        .extensions
        .get::<ConnInfo>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.peer.ip());
    let token_given = guard
        .admin_token
        .as_ref()
        .is_some_and(|token| crate::admin::bearer_matches(&parts.headers, token));
    let caller = if token_given {
        let ip = live.access.client(peer, &parts.headers);
        live.access.admit(ip).await?;
        Caller {
            ip,
            peer,
            user: None,
        }
    } else {
        // As for `/v2/`: a login is asked for whenever logins exist.
        access::caller(&live.access, peer, parts, true).await?
    };
    access::rules(&live.access, &caller, parts, None)
}
