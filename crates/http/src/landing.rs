//! Requests outside the registry API: with `url302` configured, a 302 to
//! it; otherwise `/` gets a small page saying what this is and how to
//! point clients at it, and any other path a 404 in the OCI envelope.
//! Nothing on the page comes from the request.

use crate::error::ApiError;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, Uri, header};

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>berth registry mirror</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:3em auto;padding:0 1em}code,pre{background:#f3f3f3;padding:.1em .3em}pre{padding:.8em;overflow:auto}</style>
</head><body>
<h1>berth registry mirror</h1>
<p>This host is a pull-through cache for container registries (Docker Hub, ghcr.io, quay.io and others).
It serves the registry API under <code>/v2/</code>; there is nothing to browse here.</p>
<h2>docker</h2>
<pre>/etc/docker/daemon.json: { "registry-mirrors": ["https://THIS-HOST"] }</pre>
<h2>containerd / Kubernetes</h2>
<pre>/etc/containerd/certs.d/docker.io/hosts.toml:
server = "https://registry-1.docker.io"
[host."https://THIS-HOST"]
  capabilities = ["pull", "resolve"]</pre>
<h2>podman, CRI-O, skopeo</h2>
<pre>/etc/containers/registries.conf:
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "THIS-HOST"</pre>
<p>Replace THIS-HOST with the name you reach this mirror by. Other registries go through the same host:
<code>THIS-HOST/ghcr.io/org/image</code>.</p>
</body></html>
"#;

/// The answer to a request outside the registry API.
pub(crate) fn outside_api(url302: Option<&url::Url>, method: &Method, uri: &Uri) -> Response {
    let readable = method == Method::GET || method == Method::HEAD;
    if let Some(target) = url302.filter(|_| readable)
        && let Ok(location) = HeaderValue::from_str(target.as_str())
    {
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    if readable && matches!(uri.path(), "/" | "/index.html") {
        let body = if method == Method::HEAD { "" } else { PAGE };
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    }
    ApiError::not_found_route().into_response()
}
