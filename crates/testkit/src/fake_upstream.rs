//! A deliberately broken upstream registry for what a real one cannot do:
//! serve bytes that do not match the digest asked for, answer slowly, or
//! claim a digest its body does not have. Counts every request it gets.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake serves for one path below `/v2/`.
#[derive(Clone, Default, Debug)]
pub struct Canned {
    /// Status code; 0 means 200.
    pub status: u16,
    /// Extra response headers, e.g. `Location` for a redirect.
    pub headers: Vec<(&'static str, String)>,
    /// Response body.
    pub body: Bytes,
    /// Content-Type.
    pub content_type: &'static str,
    /// Docker-Content-Digest header, if any.
    pub digest_header: Option<String>,
    /// Send the body in this many pieces with a pause between them.
    pub pieces: usize,
    /// Pause between pieces.
    pub pause: Duration,
    /// Break the connection after this many body bytes, for the first
    /// `breaks` responses to this path.
    pub break_after: usize,
    /// How many responses still break (see `break_after`).
    pub breaks: usize,
    /// Send no `Content-Length` (chunked); use with `pieces` > 1.
    pub chunked: bool,
    /// Send `body` again and again for ever (chunked), pausing `pause`
    /// between repetitions.
    pub endless: bool,
}

#[derive(Default, Debug)]
struct Inner {
    routes: HashMap<String, Canned>,
    requests: Vec<String>,
    /// When set: (expected Authorization value, challenge to send without it).
    auth: Option<(String, String)>,
    /// When set, every request below `/v2/` is answered with this status.
    status_all: Option<u16>,
    /// When set: `/token` issues short-lived tokens and `/v2/...` wants one.
    tokens: Option<Tokens>,
    /// Requests answered 401.
    rejected: usize,
    /// This fake's own base URL, for the token realm.
    url: String,
    /// `/v2/` is challenged too when auth is required (as real
    /// registries do), not answered `{}`.
    ping_challenged: bool,
}

/// Tokens issued by `/token`, each valid for `lifetime` from issue.
#[derive(Debug)]
struct Tokens {
    lifetime: Duration,
    issued: HashMap<String, std::time::Instant>,
}

/// A running fake upstream on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct FakeUpstream {
    inner: Arc<Mutex<Inner>>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl FakeUpstream {
    /// Start serving on a free port.
    pub async fn start() -> FakeUpstream {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        inner.lock().unwrap().url = url.clone();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeUpstream { inner, url }
    }

    /// An empty OCI image manifest, served as `proj/app` at `tag`.
    pub const MANIFEST: &'static [u8] =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;

    /// Serve [`FakeUpstream::MANIFEST`] as `proj/app:<tag>`.
    pub fn manifest(&self, tag: &str) {
        self.route(
            &format!("proj/app/manifests/{tag}"),
            Canned {
                body: Bytes::from_static(Self::MANIFEST),
                content_type: "application/vnd.oci.image.manifest.v1+json",
                ..Canned::default()
            },
        );
    }

    /// Serve `canned` for `path` (below `/v2/`, no query).
    pub fn route(&self, path: &str, canned: Canned) {
        self.inner
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), canned);
    }

    /// Serve `data` as a blob of `proj/app`, answered as `canned` says
    /// (its body and content type are set here). Returns the digest.
    pub fn blob(&self, data: &[u8], canned: Canned) -> String {
        let digest = crate::checks::sha256(data);
        self.route(
            &format!("proj/app/blobs/{digest}"),
            Canned {
                body: Bytes::copy_from_slice(data),
                content_type: "application/octet-stream",
                ..canned
            },
        );
        digest
    }

    /// Answer 401 with `challenge` unless `Authorization` equals `expected`.
    /// `/v2/` and paths starting with `/token` are exempt.
    pub fn require_auth(&self, expected: &str, challenge: &str) {
        self.inner.lock().unwrap().auth = Some((expected.to_owned(), challenge.to_owned()));
    }

    /// Act as a token service with strict expiry: `GET /token` answers a
    /// new token with `expires_in` = `lifetime`, and every request below
    /// `/v2/` (except `/v2/` itself) needs `Bearer <token>` issued less than
    /// `lifetime` ago, else 401 with a challenge naming this fake's `/token`.
    pub fn issue_tokens(&self, lifetime: Duration) {
        self.inner.lock().unwrap().tokens = Some(Tokens {
            lifetime,
            issued: HashMap::new(),
        });
    }

    /// Challenge `/v2/` as well under [`FakeUpstream::require_auth`], as
    /// a real registry does: how a token realm is learned.
    pub fn challenge_ping(&self) {
        self.inner.lock().unwrap().ping_challenged = true;
    }

    /// How many requests were answered 401 for missing or stale auth.
    pub fn rejections(&self) -> usize {
        self.inner.lock().unwrap().rejected
    }

    /// Answer every request below `/v2/` with `status` (None: normal).
    pub fn set_status_all(&self, status: Option<u16>) {
        self.inner.lock().unwrap().status_all = status;
    }

    /// Requests received, as "METHOD /path?query auth=<Authorization or ->"
    /// followed by " range=<Range>" when the request had one.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests received, but for the anonymous `GET /v2/` berth sends at
    /// start to learn the challenge.
    pub fn requests_beyond_ping(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| !r.starts_with("GET /v2/ "))
            .collect()
    }

    /// Forget the requests received so far.
    pub fn reset_requests(&self) {
        self.inner.lock().unwrap().requests.clear();
    }

    /// Requests whose line contains `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
        .get("authorization")
        .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned());
    let (canned, auth) = {
        let mut i = inner.lock().unwrap();
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let range = req
            .headers()
            .get("range")
            .map(|v| format!(" range={}", v.to_str().unwrap()))
            .unwrap_or_default();
        i.requests.push(format!(
            "{} {path}{query} auth={authorization}{range}",
            req.method()
        ));
        if let Some(status) = i.status_all
            && path.starts_with("/v2/")
        {
            let mut r = Response::new(Body::from(
                r#"{"errors":[{"code":"UNAVAILABLE","message":"down"}]}"#,
            ));
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            return r;
        }
        if let Some(response) = token_service(&mut i, &path, &authorization) {
            return response;
        }
        let key = path.trim_start_matches("/v2/").trim_start_matches('/');
        let canned = i.routes.get_mut(key).map(|c| {
            let now = c.clone();
            c.breaks = c.breaks.saturating_sub(1);
            now
        });
        (canned, i.auth.clone().map(|a| (a, i.ping_challenged)))
    };
    let (auth, ping_challenged) = match auth {
        Some((a, p)) => (Some(a), p),
        None => (None, false),
    };
    if path == "/v2/" && !(ping_challenged && auth.is_some()) {
        return Response::new(Body::from("{}"));
    }
    if let Some((expected, challenge)) = auth
        && !path.starts_with("/token")
        && authorization != expected
    {
        let mut r = Response::new(Body::from(
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        ));
        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
        r.headers_mut()
            .insert("www-authenticate", challenge.parse().unwrap());
        inner.lock().unwrap().rejected += 1;
        return r;
    }
    let Some(c) = canned else {
        let mut r = Response::new(Body::from(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
        ));
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        return r;
    };
    // A single "bytes=N-" range is honoured with 206.
    let from = req
        .headers()
        .get("range")
        .and_then(|v| {
            v.to_str()
                .ok()?
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse::<usize>()
                .ok()
        })
        .filter(|n| *n < c.body.len());
    let full_len = c.body.len();
    let c = Canned {
        body: c.body.slice(from.unwrap_or(0)..),
        ..c
    };
    let len = c.body.len();
    let body = if c.endless {
        let (chunk, pause) = (c.body.clone(), c.pause);
        let stream = futures_util::stream::repeat(chunk).then(move |chunk| async move {
            tokio::time::sleep(pause).await;
            Ok::<_, std::io::Error>(chunk)
        });
        Body::from_stream(stream)
    } else if c.breaks > 0 {
        let head = c.body.slice(..c.break_after.min(len));
        // Let the first part reach the client before the connection breaks.
        let stream = futures_util::stream::iter([Ok(head), Err(())]).then(|item| async move {
            if item.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            item.map_err(|()| std::io::Error::other("connection reset by the fake upstream"))
        });
        Body::from_stream(stream)
    } else if c.pieces <= 1 {
        Body::from(c.body.clone())
    } else {
        let size = len.div_ceil(c.pieces);
        let chunks: Vec<Bytes> = c.body.chunks(size).map(Bytes::copy_from_slice).collect();
        let pause = c.pause;
        let stream = futures_util::stream::iter(chunks).then(move |chunk| async move {
            tokio::time::sleep(pause).await;
            Ok::<_, std::io::Error>(chunk)
        });
        Body::from_stream(stream)
    };
    let mut r = Response::new(if req.method() == http::Method::HEAD {
        Body::empty()
    } else {
        body
    });
    if c.status != 0 {
        *r.status_mut() = http::StatusCode::from_u16(c.status).unwrap();
    }
    if from.is_some() {
        *r.status_mut() = http::StatusCode::PARTIAL_CONTENT;
    }
    let h = r.headers_mut();
    for (name, value) in &c.headers {
        h.insert(*name, value.parse().unwrap());
    }
    h.insert("content-type", c.content_type.parse().unwrap());
    if !c.chunked && !c.endless {
        h.insert("content-length", len.into());
    }
    if let Some(from) = from {
        let range = format!("bytes {from}-{}/{full_len}", full_len - 1);
        h.insert("content-range", range.parse().unwrap());
    }
    if let Some(d) = c.digest_header {
        h.insert("docker-content-digest", d.parse().unwrap());
    }
    r
}

/// The answer of the token service set up by `issue_tokens`, if it has
/// one for this request: a new token, or a 401 for a missing or stale one.
fn token_service(i: &mut Inner, path: &str, authorization: &str) -> Option<Response> {
    let url = i.url.clone();
    let tokens = i.tokens.as_mut()?;
    if path == "/token" {
        let token = format!("tok-{}", tokens.issued.len());
        tokens
            .issued
            .insert(token.clone(), std::time::Instant::now());
        let body = format!(
            r#"{{"token":"{token}","expires_in":{}}}"#,
            tokens.lifetime.as_secs()
        );
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return Some(r);
    }
    if !path.starts_with("/v2/") || path == "/v2/" {
        return None;
    }
    let valid = authorization
        .strip_prefix("Bearer ")
        .and_then(|t| tokens.issued.get(t))
        .is_some_and(|at| at.elapsed() < tokens.lifetime);
    if valid {
        return None;
    }
    i.rejected += 1;
    let mut r = Response::new(Body::from(
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    ));
    *r.status_mut() = http::StatusCode::UNAUTHORIZED;
    let challenge = format!("Bearer realm=\"{url}/token\",service=\"fake\"");
    r.headers_mut()
        .insert("www-authenticate", challenge.parse().unwrap());
    Some(r)
}

use futures_util::StreamExt as _;
