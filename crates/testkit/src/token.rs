//! `TokenIssuer`: an in-process Docker-Hub-style token server for the
//! upstream registry. It owns the access policy (anonymous, `puller`,
//! `pusher`, `outsider`, the `private/` namespace), the request counter and log, and the
//! outage switch. Signing lives in `jwt`.

use super::jwt::{Grant, Signer, rfc3339, unix_now};
use super::proc::Background;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `service` the registry expects in `aud`.
pub const SERVICE: &str = "registry.test";
/// `iss` the registry expects.
pub const ISSUER: &str = "berth-test-issuer";
/// Users: (name, password, may push).
pub const USERS: &[(&str, &str, bool)] = &[
    ("puller", "pullpass", false),
    ("pusher", "pushpass", true),
    ("outsider", "outsidepass", false),
];
/// A user who may pull only what anonymous clients may (not `private/`).
pub const OUTSIDER: &str = "outsider";
/// Repositories under this prefix are not readable anonymously.
pub const PRIVATE_PREFIX: &str = "private/";

/// One request the issuer answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// "GET" or "POST".
    pub method: String,
    /// Every requested scope, e.g. "repository:library/small:pull".
    pub scopes: Vec<String>,
    /// The authenticated (or claimed, on 401) user; `None` when anonymous.
    pub username: Option<String>,
    /// The status the issuer answered with.
    pub status: u16,
}

#[derive(Debug)]
struct IssuerState {
    signer: Signer,
    down: AtomicBool,
    expires_in: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
}

/// A running token server. Dropping it stops the server.
#[derive(Debug)]
pub struct TokenIssuer {
    state: Arc<IssuerState>,
    addr: SocketAddr,
    cert_dir: tempfile::TempDir,
    _bg: Background,
}

impl TokenIssuer {
    /// Generates a key and certificate and starts serving on 127.0.0.1:0.
    /// Serves from its own threads, so it works from sync and async tests.
    pub fn start() -> Self {
        let signer = Signer::generate(ISSUER);
        let cert_dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(cert_dir.path().join("issuer.pem"), signer.cert_pem()).expect("write cert");
        let state = Arc::new(IssuerState {
            signer,
            down: AtomicBool::new(false),
            expires_in: AtomicU64::new(300),
            log: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new()
            .route("/token", get(token).post(token))
            .with_state(state.clone());
        let bg = Background::new("token-issuer");
        bg.handle().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        TokenIssuer {
            state,
            addr,
            cert_dir,
            _bg: bg,
        }
    }

    /// The realm, e.g. "http://127.0.0.1:PORT/token".
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM file holding the certificate (the registry's `rootcertbundle`).
    pub fn cert_path(&self) -> PathBuf {
        self.cert_dir.path().join("issuer.pem")
    }

    /// Directory holding the certificate.
    pub fn cert_dir(&self) -> &Path {
        self.cert_dir.path()
    }

    /// How many token requests arrived (including refused ones).
    pub fn token_requests(&self) -> usize {
        self.state.log.lock().expect("log lock").len()
    }

    /// Every token request so far, oldest first.
    pub fn token_log(&self) -> Vec<TokenRequest> {
        self.state.log.lock().expect("log lock").clone()
    }

    pub fn reset_log(&self) {
        self.state.log.lock().expect("log lock").clear();
    }

    /// While down, every request is answered 503 (and still logged).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// A token for `scopes` as `user` (trusted, no password check) would get
    /// it, without an HTTP round trip and without being logged.
    pub fn mint(&self, scopes: &[&str], user: Option<&str>) -> String {
        let user = user.map(|u| (u, USERS.iter().any(|(n, _, push)| *n == u && *push)));
        self.state.jwt(scopes.iter().copied(), user).0
    }

    /// `expires_in` (and token lifetime) of tokens issued from now on; default 300 s.
    pub fn set_expires_in(&self, ttl: Duration) {
        self.state.expires_in.store(ttl.as_secs(), Ordering::SeqCst);
    }
}

/// The parts of a token request the policy looks at.
struct Params {
    scopes: Vec<String>,
    service: Option<String>,
    /// `Err` for a POST with a grant type other than `password`.
    creds: Result<Option<(String, String)>, ()>,
}

impl Params {
    fn parse(method: &Method, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Self {
        let mut params: Vec<(String, String)> =
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        if method == Method::POST {
            params.extend(url::form_urlencoded::parse(body).into_owned());
        }
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let creds = if method != Method::POST {
            Ok(basic_credentials(headers))
        } else if param("grant_type").as_deref() == Some("password") {
            Ok(param("username").map(|u| (u, param("password").unwrap_or_default())))
        } else {
            Err(())
        };
        Params {
            scopes: params
                .iter()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
                .collect(),
            service: param("service"),
            creds,
        }
    }
}

async fn token(
    State(state): State<Arc<IssuerState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = Params::parse(&method, &headers, query.as_deref(), &body);
    let resp = match state.authenticate(&params) {
        Ok(user) => state.issue(&params.scopes, user),
        Err((status, message)) => error(status, message),
    };
    let username = params.creds.ok().flatten().map(|(u, _)| u);
    state.log.lock().expect("log lock").push(TokenRequest {
        method: method.to_string(),
        scopes: params.scopes,
        username,
        status: resp.status().as_u16(),
    });
    resp
}

type User = Option<(&'static str, bool)>;

impl IssuerState {
    /// The authenticated user (None: anonymous) or the error to answer.
    fn authenticate(&self, params: &Params) -> Result<User, (StatusCode, &'static str)> {
        if self.down.load(Ordering::SeqCst) {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "token service down"));
        }
        if params.service.as_deref().is_some_and(|s| s != SERVICE) {
            return Err((StatusCode::BAD_REQUEST, "unknown service"));
        }
        match &params.creds {
            Err(()) => Err((StatusCode::BAD_REQUEST, "unsupported grant_type")),
            Ok(None) => Ok(None),
            Ok(Some((u, p))) => USERS
                .iter()
                .find(|(n, pw, _)| n == u && pw == p)
                .map(|&(name, _, push)| Some((name, push)))
                .ok_or((StatusCode::UNAUTHORIZED, "invalid credentials")),
        }
    }

    fn issue(&self, scopes: &[String], user: User) -> Response {
        let (jwt, ttl) = self.jwt(scopes.iter().map(String::as_str), user);
        let body = serde_json::json!({
            "token": jwt,
            "access_token": jwt,
            "expires_in": ttl.as_secs(),
            "issued_at": rfc3339(unix_now()),
        });
        (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }

    /// A signed token granting `user` what the policy allows of `scopes`.
    fn jwt<'a>(
        &self,
        scopes: impl Iterator<Item = &'a str>,
        user: Option<(&str, bool)>,
    ) -> (String, Duration) {
        let grants: Vec<Grant> = scopes.filter_map(|s| grant(s, user)).collect();
        let ttl = Duration::from_secs(self.expires_in.load(Ordering::SeqCst));
        let subject = user.map_or("", |(n, _)| n);
        (
            self.signer.token(ISSUER, SERVICE, subject, &grants, ttl),
            ttl,
        )
    }
}

/// What `user` (None = anonymous; else (name, may_push)) gets for `scope`.
fn grant(scope: &str, user: Option<(&str, bool)>) -> Option<Grant> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind != "repository" || name.is_empty() {
        return None;
    }
    let private = name.starts_with(PRIVATE_PREFIX);
    let allowed: &[&str] = match user {
        None if private => &[],
        Some((OUTSIDER, _)) if private => &[],
        None | Some((_, false)) => &["pull"],
        Some((_, true)) => &["pull", "push"],
    };
    let actions: Vec<String> = actions
        .split(',')
        .filter(|a| allowed.contains(a))
        .map(str::to_owned)
        .collect();
    (!actions.is_empty()).then(|| Grant {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions,
    })
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded =
        String::from_utf8(data_encoding::BASE64.decode(b64.trim().as_bytes()).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
