//! Tag lists and referrers: validated, then passed to upstream and back
//! unchanged (they are small and change often, so they are not cached).

use crate::http::admit::Admitted;
use crate::http::error::ApiError;
use crate::http::registry_headers;
use crate::oci::{Digest, ErrorCode, Tag};
use crate::upstream::Passthrough;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, message)
}

/// `GET /v2/<name>/tags/list?n=&last=`
pub(crate) async fn tags(admitted: &Admitted, query: Option<&str>) -> Result<Response, ApiError> {
    let suffix = tags_suffix(query)?;
    let answer = admitted
        .registry
        .passthrough(&admitted.repo, &suffix, "tags")
        .await
        .map_err(crate::pull::PullError::from)?;
    Ok(respond(answer))
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
    admitted: &Admitted,
    digest: &Digest,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let suffix = referrers_suffix(digest, query)?;
    let answer = admitted
        .registry
        .passthrough(&admitted.repo, &suffix, "referrers")
        .await
        .map_err(crate::pull::PullError::from)?;
    Ok(respond(answer))
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

fn respond(answer: Passthrough) -> Response {
    let len = answer.body.len();
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    registry_headers(headers);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let content_type = answer
        .content_type
        .unwrap_or_else(|| "application/json".to_owned());
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // Pagination links point at upstream paths; clients follow them
    // relative to berth, where the same path works for the default
    // upstream. Keep only the query part so they stay on berth.
    if let Some(link) = answer.link.and_then(|l| rewrite_link(&l))
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        headers.insert(header::LINK, v);
    }
    response
}

/// Keep a `Link: <…?n=..&last=..>; rel="next"` usable through berth by
/// reducing the target to its query string.
fn rewrite_link(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    let target = &link[start..end];
    let query = target.split_once('?').map(|(_, q)| q)?;
    Some(format!("<?{query}>{}", &link[end + 1..]))
}
