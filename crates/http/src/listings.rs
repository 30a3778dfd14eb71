//! Tag lists and referrers: the query is checked and forwarded, and the
//! answer checked before the engine caches it (for the upstream's
//! `list_ttl`; stale, with a `Warning`, when upstream fails). A tag list
//! must be JSON of the registry's shape and is served as
//! `application/json`; of its `Link` headers only a relative `rel="next"`
//! survives, rebuilt from its `n` and `last`.

use crate::admit::Admitted;
use crate::error::ApiError;
use crate::manifests::cache_headers;
use crate::{HttpState, api_headers};
use axum::body::Body;
use axum::response::Response;
use berth_oci::{Digest, ErrorCode, Resource, Tag, check_tag_list};
use berth_pull::{Listing, ListingAnswer, ListingRequest};
use berth_upstream::RelayedAnswer;
use http::{HeaderValue, StatusCode, header};

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, message)
}

/// `GET /v2/<name>/tags/list?n=&last=`
pub(crate) async fn tags(
    state: &HttpState,
    admitted: &Admitted,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let request = tags_suffix(query)?;
    let check = |answer: RelayedAnswer| {
        let list = check_tag_list(&answer.body).map_err(|e| e.to_string())?;
        Ok(Listing {
            content_type: "application/json".to_owned(),
            link: answer.link.as_deref().and_then(next_link),
            body: list.into(),
        })
    };
    let req = ListingRequest {
        origin: &admitted.origin,
        repo: &admitted.repo,
        request: &request,
        kind: Resource::Tags,
    };
    Ok(respond(state.pull.listing(&req, check).await?))
}

/// The `rel="next"` link of a `Link` header, if it is a relative URL,
/// reduced to a query of its valid `n` and `last` so that it stays on
/// berth.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let next = params.split(';').any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("next")
            })
        });
        if !next || !is_relative(target) {
            return None;
        }
        let (_, query) = target.split_once('?')?;
        let kept = tags_suffix(Some(query)).ok()?;
        let (_, kept) = kept.split_once('?')?;
        Some(format!("<?{kept}>; rel=\"next\""))
    })
}

/// Whether a URL reference is relative: no scheme, no authority.
fn is_relative(target: &str) -> bool {
    let first = target.split(['/', '?', '#']).next().unwrap_or_default();
    !target.starts_with("//") && !first.contains(':')
}

fn tags_suffix(query: Option<&str>) -> Result<String, ApiError> {
    let mut forwarded = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "n" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| bad_query(format!("n={value:?} is not a count")))?;
                forwarded.append_pair("n", &n.to_string());
            }
            "last" => {
                let last: Tag = value.parse().map_err(ApiError::bad_reference)?;
                forwarded.append_pair("last", last.as_str());
            }
            _ => {}
        }
    }
    let forwarded = forwarded.finish();
    Ok(if forwarded.is_empty() {
        "tags/list".to_owned()
    } else {
        format!("tags/list?{forwarded}")
    })
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`
pub(crate) async fn referrers(
    state: &HttpState,
    admitted: &Admitted,
    digest: &Digest,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let request = referrers_suffix(digest, query)?;
    let check = |answer: RelayedAnswer| {
        Ok(Listing {
            content_type: answer
                .content_type
                .unwrap_or_else(|| berth_oci::OCI_INDEX.to_owned()),
            link: answer.link.as_deref().and_then(rewrite_link),
            body: answer.body,
        })
    };
    let req = ListingRequest {
        origin: &admitted.origin,
        repo: &admitted.repo,
        request: &request,
        kind: Resource::Referrers,
    };
    Ok(respond(state.pull.listing(&req, check).await?))
}

fn referrers_suffix(digest: &Digest, query: Option<&str>) -> Result<String, ApiError> {
    let mut forwarded = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "artifactType" {
            // An unencoded '+' arrives as a space; media types have none.
            let value = value.replace(' ', "+");
            let ok = value.len() < 256
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b));
            if !ok {
                return Err(bad_query(format!(
                    "artifactType={value:?} is not a media type"
                )));
            }
            forwarded.append_pair("artifactType", &value);
        }
    }
    let forwarded = forwarded.finish();
    let mut suffix = format!("referrers/{digest}");
    if !forwarded.is_empty() {
        suffix = format!("{suffix}?{forwarded}");
    }
    Ok(suffix)
}

fn respond(answer: ListingAnswer) -> Response {
    let listing = answer.listing;
    let len = listing.body.len();
    let mut response = Response::new(Body::from(listing.body));
    let headers = response.headers_mut();
    api_headers(headers);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&listing.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Some(link) = listing.link
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        headers.insert(header::LINK, v);
    }
    cache_headers(headers, answer.outcome);
    response
}

/// Keep a referrers `Link: <…?…>; rel="next"` usable through berth by
/// reducing the target to its query string.
fn rewrite_link(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    let target = &link[start..end];
    let query = target.split_once('?').map(|(_, q)| q)?;
    Some(format!("<?{query}>{}", &link[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_next_links_survive() {
        assert_eq!(
            next_link(r#"</v2/library/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some(r#"<?n=2&last=b>; rel="next""#)
        );
        assert_eq!(
            next_link(r#"<?last=b&n=1&evil=%0d%0a>; REL=next"#).as_deref(),
            Some(r#"<?last=b&n=1>; rel="next""#)
        );
        for refused in [
            r#"<http://evil.example/v2/x/tags/list?n=2&last=b>; rel="next""#,
            r#"<//evil.example/v2/x/tags/list?n=2&last=b>; rel="next""#,
            r#"</v2/x/tags/list?n=2&last=b>; rel="prev""#,
            r#"</v2/x/tags/list?n=2&last=..>; rel="next""#,
            r#"</v2/x/tags/list>; rel="next""#,
            "junk",
        ] {
            assert_eq!(next_link(refused), None, "{refused}");
        }
    }
}
