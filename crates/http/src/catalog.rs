//! `GET /v2/_catalog`: the repositories berth holds cached tags for, each
//! named as a client of this endpoint pulls it (`library/nginx` on the
//! default upstream, `ghcr.io/owner/app` on another), in lexical order,
//! paginated with `n` and `last` and a `Link` to the next page as the
//! distribution spec says. A repository the access rules would refuse
//! the caller is left out, and so is a pass-through upstream's (what one
//! client may pull there says nothing about another).

use crate::access::{Caller, Target};
use crate::error::ApiError;
use crate::route::Endpoint;
use crate::{Live, api_headers};
use axum::response::{IntoResponse as _, Response};
use berth_config::AuthMode;
use berth_oci::ErrorCode;
use berth_pull::PullService;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};

/// Names per page when the client does not say.
const DEFAULT_PAGE: usize = 100;
/// The most names one page holds, whatever the client asks.
const MAX_PAGE: usize = 1000;

/// The page of the catalog that `request` asks for.
pub(crate) async fn catalog(
    pull: &PullService,
    live: &Live,
    caller: &Caller,
    request: &Parts,
) -> Result<Response, ApiError> {
    let (n, last) = page(request.uri.query())?;
    let tags = Endpoint::Tags;
    let mut names: Vec<String> = pull
        .repositories()
        .await?
        .into_iter()
        .filter_map(|key| {
            let upstream = live.origins.upstreams().by_name(&key.upstream)?;
            let config = upstream.config();
            if config.auth_mode == AuthMode::Passthrough {
                return None;
            }
            let target = Target {
                upstream: upstream.name(),
                repository: &key.repo,
                endpoint: &tags,
            };
            crate::access::rules(&live.access, caller, request, Some(target)).ok()?;
            Some(if config.default {
                key.repo
            } else {
                format!("{}/{}", key.upstream, key.repo)
            })
        })
        .collect();
    names.sort();
    names.dedup();
    let after = last.as_deref();
    let mut rest = names
        .into_iter()
        .filter(|name| after.is_none_or(|l| name.as_str() > l))
        .peekable();
    let shown: Vec<String> = rest.by_ref().take(n).collect();
    let more = rest.peek().is_some();
    let body = serde_json::json!({ "repositories": shown }).to_string();
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    api_headers(response.headers_mut());
    if more && let Some(last_shown) = shown.last() {
        let next: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", last_shown)
            .finish();
        if let Ok(link) = HeaderValue::from_str(&format!("</v2/_catalog?{next}>; rel=\"next\"")) {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

/// `n` (at most [`MAX_PAGE`]) and `last` from the query.
fn page(query: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let mut n = DEFAULT_PAGE;
    let mut last = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "n" => {
                n = value.parse::<usize>().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::PaginationNumberInvalid,
                        format!("n={value:?} is not a number of repositories"),
                    )
                })?;
            }
            "last" => last = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok((n.min(MAX_PAGE), last))
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn pages_are_bounded_and_a_bad_number_is_refused() {
        assert_eq!(page(None).ok(), Some((100, None)));
        assert_eq!(
            page(Some("n=2&last=library%2Fa")).ok(),
            Some((2, Some("library/a".to_owned())))
        );
        assert_eq!(page(Some("n=999999")).ok().map(|p| p.0), Some(1000));
        assert!(page(Some("n=many")).is_err());
    }
}
