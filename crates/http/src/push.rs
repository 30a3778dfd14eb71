//! Pushes through berth, in pass-through mode where `push = true`: blob
//! uploads (POST, PATCH, PUT; monolithic and chunked) and manifest PUTs go
//! to the upstream with the client's own credentials, their bodies
//! streamed, never buffered (`berth_pull::PullService::forward_write`). Anywhere else a
//! write is 405 `UNSUPPORTED`, and nothing is forwarded.
//!
//! Upstream's `Location` is rewritten to a path on berth, under the name
//! the client used, so the next step of an upload comes back here; it is
//! relative, so it names no host at all. Cross-repository mounts are not
//! passed on: upstream then starts a plain upload.

use crate::admit::Admitted;
use crate::error::ApiError;
use crate::passthrough;
use crate::route::{Endpoint, Route};
use axum::body::Body;
use axum::response::Response;
use berth_oci::{ErrorCode, RepoName};
use berth_pull::{ClientWrite, PullService, WriteTarget};
use http::{HeaderValue, Method, StatusCode, header};

/// Whether `method` on `endpoint` is a write berth may forward.
pub(crate) fn is_write(method: &Method, endpoint: &Endpoint) -> bool {
    match endpoint {
        Endpoint::Upload(None) => method == Method::POST,
        Endpoint::Upload(Some(_)) => {
            method == Method::PATCH || method == Method::PUT || method == Method::GET
        }
        Endpoint::Manifest(_) => method == Method::PUT,
        _ => false,
    }
}

/// What the edge knows of a write besides its route.
pub(crate) struct WriteRequest<'a> {
    pub(crate) method: &'a Method,
    pub(crate) headers: &'a http::HeaderMap,
    pub(crate) query: Option<&'a str>,
    /// `?ns=`, given back on the rewritten `Location`.
    pub(crate) ns: Option<&'a str>,
    /// Where clients reach berth, for a 401's challenge.
    pub(crate) base: &'a str,
}

/// Forward a write, or refuse it where push is off.
pub(crate) async fn forward(
    pull: &PullService,
    admitted: &Admitted,
    route: &Route,
    request: &WriteRequest<'_>,
    body: Body,
) -> Result<Response, ApiError> {
    let upstream = &admitted.origin.upstream;
    if !PullService::takes_writes(&admitted.origin) {
        return Err(ApiError::read_only());
    }
    let target = match &route.endpoint {
        Endpoint::Upload(None) => WriteTarget::NewUpload,
        Endpoint::Upload(Some(session)) => WriteTarget::Upload(session),
        Endpoint::Manifest(reference) => WriteTarget::Manifest(reference),
        _ => return Err(ApiError::read_only()),
    };
    let query = upstream_query(request.query)?;
    let write = ClientWrite {
        target,
        method: request.method.clone(),
        query: query.as_deref(),
        headers: request.headers,
    };
    let answer = pull
        .forward_write(
            &admitted.origin,
            &admitted.repo,
            &write,
            body.into_data_stream(),
        )
        .await?;
    if answer.status == 401 {
        return Err(passthrough::unauthorized(
            request.base,
            upstream.name(),
            Some((&route.name, "pull,push")),
            format!(
                "upstream {} wants credentials that may push to {}",
                upstream.name(),
                route.name
            ),
        ));
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in &answer.headers {
        if name == header::LOCATION || name == header::WWW_AUTHENTICATE {
            continue;
        }
        headers.append(name, value.clone());
    }
    if let Some(location) = answer.headers.get(header::LOCATION) {
        let rewritten = location
            .to_str()
            .ok()
            .and_then(|l| berth_location(l, &admitted.repo, &route.name, request.ns));
        match rewritten.and_then(|l| HeaderValue::from_str(&l).ok()) {
            Some(v) => {
                headers.insert(header::LOCATION, v);
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::Unavailable,
                    format!(
                        "upstream {} answered with a Location outside {}",
                        upstream.name(),
                        admitted.repo
                    ),
                ));
            }
        }
    }
    crate::api_headers(headers);
    Ok(response)
}

/// The client's query as it goes upstream: without berth's own `ns` and
/// without a cross-repository mount (`mount`, `from`), whose source name
/// upstream would read as its own.
fn upstream_query(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| !matches!(k.as_str(), "ns" | "mount" | "from"))
        .collect();
    if pairs.iter().any(|(k, v)| k.len() > 64 || v.len() > 4096) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            "query parameter too long",
        ));
    }
    if pairs.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish(),
    ))
}

/// Upstream's `Location` (absolute or not) as a path on berth: the same
/// path and query under the client's name, with its `ns` again. `None`
/// when it points outside the repository's `/v2/` space.
fn berth_location(
    location: &str,
    upstream_repo: &RepoName,
    client_name: &RepoName,
    ns: Option<&str>,
) -> Option<String> {
    let base = url::Url::parse("http://upstream.invalid/").ok()?;
    let url = base.join(location).ok()?;
    let rest = url
        .path()
        .strip_prefix(&format!("/v2/{upstream_repo}/"))?
        .to_owned();
    let mut out = url::Url::parse(&format!("http://berth.invalid/v2/{client_name}/{rest}")).ok()?;
    out.set_query(url.query());
    if let Some(ns) = ns {
        out.query_pairs_mut().append_pair("ns", ns);
    }
    let query = out.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("{}{query}", out.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_come_back_to_berth_under_the_clients_name() {
        let up: RepoName = "library/app".parse().unwrap();
        let client: RepoName = "app".parse().unwrap();
        assert_eq!(
            berth_location(
                "http://registry.internal:5000/v2/library/app/blobs/uploads/abc?_state=x%3D",
                &up,
                &client,
                None
            )
            .as_deref(),
            Some("/v2/app/blobs/uploads/abc?_state=x%3D")
        );
        assert_eq!(
            berth_location(
                "/v2/library/app/manifests/sha256:00",
                &up,
                &client,
                Some("docker.io")
            )
            .as_deref(),
            Some("/v2/app/manifests/sha256:00?ns=docker.io")
        );
        assert_eq!(
            berth_location("/v2/other/blobs/uploads/abc", &up, &client, None),
            None
        );
        assert_eq!(
            berth_location("https://evil.example/x", &up, &client, None),
            None
        );
    }

    #[test]
    fn mounts_and_ns_stay_here() {
        assert_eq!(
            upstream_query(Some("mount=sha256:00&from=other&ns=docker.io")).unwrap(),
            None
        );
        assert_eq!(
            upstream_query(Some("digest=sha256%3A00&_state=a"))
                .unwrap()
                .as_deref(),
            Some("digest=sha256%3A00&_state=a")
        );
    }
}
