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
#[derive(Clone, Default)]
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
}

#[derive(Default)]
struct Inner {
    routes: HashMap<String, Canned>,
    requests: Vec<String>,
    /// When set: (expected Authorization value, challenge to send without it).
    auth: Option<(String, String)>,
}

/// A running fake upstream on 127.0.0.1.
#[derive(Clone)]
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
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeUpstream { inner, url }
    }

    /// Serve `canned` for `path` (below `/v2/`, no query).
    pub fn route(&self, path: &str, canned: Canned) {
        self.inner
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), canned);
    }

    /// Answer 401 with `challenge` unless `Authorization` equals `expected`.
    /// `/v2/` and paths starting with `/token` are exempt.
    pub fn require_auth(&self, expected: &str, challenge: &str) {
        self.inner.lock().unwrap().auth = Some((expected.to_owned(), challenge.to_owned()));
    }

    /// Requests received, as "METHOD /path?query auth=<Authorization or ->".
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
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
        i.requests.push(format!(
            "{} {path}{query} auth={authorization}",
            req.method()
        ));
        let key = path.trim_start_matches("/v2/").trim_start_matches('/');
        (i.routes.get(key).cloned(), i.auth.clone())
    };
    if path == "/v2/" {
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
        return r;
    }
    let Some(c) = canned else {
        let mut r = Response::new(Body::from(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
        ));
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        return r;
    };
    let len = c.body.len();
    let body = if c.pieces <= 1 {
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
    let h = r.headers_mut();
    for (name, value) in &c.headers {
        h.insert(*name, value.parse().unwrap());
    }
    h.insert("content-type", c.content_type.parse().unwrap());
    h.insert("content-length", len.into());
    if let Some(d) = c.digest_header {
        h.insert("docker-content-digest", d.parse().unwrap());
    }
    r
}

use futures_util::StreamExt as _;
