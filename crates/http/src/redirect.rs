//! The plain listener beside an HTTPS one: every request gets 308 to the
//! same path and query on `https://`. The host in `Location` is always a
//! configured one: the request's `Host` only chooses among the names the
//! served certificates (or `domain`) cover, and anything else goes to the
//! first of them, so a forged `Host` can never send a client elsewhere.
//! It also answers ACME HTTP-01 challenges while an order is open.

use crate::error::ApiError;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_oci::ErrorCode;
use berth_tls::{Tls, name_matches};
use http::{HeaderValue, StatusCode, header};
use std::sync::Arc;

/// What the redirect needs to build `Location`.
#[derive(Debug)]
struct Target {
    tls: Arc<Tls>,
    domain: Option<String>,
    https_port: u16,
}

/// The redirecting router for a plain listener in front of `tls`, whose
/// HTTPS listener is on `https_port`.
pub fn redirect_router(tls: Arc<Tls>, domain: Option<String>, https_port: u16) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(acme_challenge))
        .fallback(redirect)
        .with_state(Arc::new(Target {
            tls,
            domain,
            https_port,
        }))
}

/// The host part of a `Host` header, lowercased, without its port.
fn host_only(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_owned();
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host.clone(), |(name, _)| name.to_owned())
}

impl Target {
    /// The configured name to send the client to.
    fn host(&self, asked: Option<&str>) -> Option<String> {
        let table = self.tls.certificates();
        let mut patterns: Vec<String> = table.names().map(str::to_owned).collect();
        if let Some(domain) = &self.domain {
            patterns.push(domain.clone());
            patterns.push(format!("*.{domain}"));
        }
        if let Some(asked) = asked.map(host_only)
            && patterns.iter().any(|p| name_matches(p, &asked))
        {
            return Some(asked);
        }
        self.domain
            .clone()
            .or_else(|| patterns.into_iter().find(|p| !p.starts_with("*.")))
    }
}

/// The key authorization of an open ACME HTTP-01 challenge.
async fn acme_challenge(State(target): State<Arc<Target>>, Path(token): Path<String>) -> Response {
    match target.tls.http_challenge(&token) {
        Some(answer) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response()
        }
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            "no ACME challenge is open under this token",
        )
        .into_response(),
    }
}

async fn redirect(State(target): State<Arc<Target>>, request: Request) -> Response {
    let asked = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let Some(host) = target.host(asked) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            "this plain listener only redirects to HTTPS, and no certificate names a host to redirect to",
        )
        .into_response();
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let port = match target.https_port {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            "the path cannot be redirected",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_only;

    #[test]
    fn the_port_leaves_the_host() {
        assert_eq!(host_only("Mirror.Example:80"), "mirror.example");
        assert_eq!(host_only("mirror.example"), "mirror.example");
        assert_eq!(host_only("[::1]:8080"), "::1");
        assert_eq!(host_only("127.0.0.1:80"), "127.0.0.1");
    }
}
