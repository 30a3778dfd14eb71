//! Admission: the one place a registry request is accepted and bound to an
//! upstream. It picks the upstream by, in order, `?ns=`, the `Host`
//! header, a path prefix naming an upstream, and the default; then applies
//! `library/` for single-segment names where configured. An `ns=` or a
//! `<prefix>.<domain>` Host that names no upstream is refused. The request
//! leaves with its origin: the upstream and the cache policy configured for
//! it. Access control and rate limits belong here too.

use crate::error::ApiError;
use crate::route::Route;
use berth_oci::{ErrorCode, RepoName};
use berth_pull::{Origin, Origins};
use berth_upstream::{Upstream, UpstreamSet};
use http::StatusCode;
use std::sync::Arc;

/// A request bound to its upstream.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The upstream and its cache policy.
    pub(crate) origin: Origin,
    /// Repository name as the upstream knows it.
    pub(crate) repo: RepoName,
}

/// The parts of a request admission looks at.
#[derive(Debug, Default)]
pub(crate) struct RequestMeta<'a> {
    /// Value of the `ns` query parameter.
    pub(crate) ns: Option<&'a str>,
    /// `Host` header.
    pub(crate) host: Option<&'a str>,
}

/// Bind `route` to an upstream.
pub(crate) fn admit(
    origins: &Origins,
    domain: Option<&str>,
    route: &Route,
    meta: &RequestMeta<'_>,
) -> Result<Admitted, ApiError> {
    let (upstream, repo) = select(origins.upstreams(), domain, route, meta)?;
    let origin = origins.of(upstream).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            "the upstream has no origin in this configuration",
        )
    })?;
    let repo = if upstream.config().auto_library && repo.segments() == 1 {
        repo.with_prefix("library").map_err(ApiError::bad_name)?
    } else {
        repo
    };
    Ok(Admitted { origin, repo })
}

/// The upstream a `/v2/` request is about: by `?ns=`, then a host prefix,
/// then the default. `None` when none applies.
pub(crate) fn ping_upstream<'u>(
    upstreams: &'u UpstreamSet,
    domain: Option<&str>,
    meta: &RequestMeta<'_>,
) -> Option<&'u Arc<Upstream>> {
    if let Some(ns) = meta.ns {
        return upstreams.by_name(ns);
    }
    if let (Some(domain), Some(host)) = (domain, meta.host)
        && let Some(prefix) = host_prefix(domain, host)
    {
        return upstreams.by_host_prefix(&prefix);
    }
    upstreams.default_upstream()
}

/// The label in front of `domain` in a `Host` value, if any.
fn host_prefix(domain: &str, host: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.strip_suffix(domain)
        .and_then(|p| p.strip_suffix('.'))
        .map(str::to_owned)
}

fn select<'u>(
    upstreams: &'u UpstreamSet,
    domain: Option<&str>,
    route: &Route,
    meta: &RequestMeta<'_>,
) -> Result<(&'u Arc<Upstream>, RepoName), ApiError> {
    if let Some(ns) = meta.ns {
        let upstream = upstreams.by_name(ns).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NameUnknown,
                format!("registry {ns:?} (from ?ns=) is not configured on this mirror"),
            )
        })?;
        return Ok((upstream, route.name.clone()));
    }
    if let (Some(domain), Some(host)) = (domain, meta.host) {
        // Below the domain, the first label must name an upstream: a typo
        // must not pull a same-named image from the default registry. The
        // bare domain goes on to the path prefix and the default.
        if let Some(prefix) = host_prefix(domain, host) {
            let upstream = upstreams.by_host_prefix(&prefix).ok_or_else(|| {
                let shown: String = prefix.chars().take(64).collect();
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NameUnknown,
                    format!("host prefix {shown:?} names no registry configured on this mirror"),
                )
            })?;
            return Ok((upstream, route.name.clone()));
        }
    }
    if let Some((first, rest)) = route.name.split_first()
        && let Some(upstream) = upstreams.by_name(first)
    {
        return Ok((upstream, rest));
    }
    let upstream = upstreams.default_upstream().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            format!(
                "{:?} names no configured registry and no default upstream is set; use /v2/<registry>/<name>",
                route.name.as_str()
            ),
        )
    })?;
    Ok((upstream, route.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::parse;
    use berth_config::Config;
    use berth_metrics::Metrics;

    fn set() -> Origins {
        let config = Config::embedded(&|_| None).unwrap();
        let set = UpstreamSet::new(&config.upstreams, &Arc::new(Metrics::new())).unwrap();
        Origins::new(set, &config.upstreams, None)
    }

    fn pick(path: &str, meta: &RequestMeta<'_>) -> Result<(String, String), ApiError> {
        let a = admit(&set(), Some("mirror.example"), &parse(path).unwrap(), meta)?;
        Ok((a.origin.name().to_owned(), a.repo.to_string()))
    }

    #[test]
    fn routing_order() {
        let none = RequestMeta::default();
        assert_eq!(
            pick("nginx/manifests/latest", &none).unwrap(),
            ("docker.io".into(), "library/nginx".into())
        );
        assert_eq!(
            pick("org/app/manifests/latest", &none).unwrap(),
            ("docker.io".into(), "org/app".into())
        );
        assert_eq!(
            pick("ghcr.io/org/app/manifests/1", &none).unwrap(),
            ("ghcr.io".into(), "org/app".into())
        );
        assert_eq!(
            pick("docker.io/nginx/manifests/1", &none).unwrap(),
            ("docker.io".into(), "library/nginx".into())
        );
        let ns = RequestMeta {
            ns: Some("quay.io"),
            host: Some("ghcr.mirror.example"),
        };
        assert_eq!(
            pick("org/app/manifests/1", &ns).unwrap(),
            ("quay.io".into(), "org/app".into())
        );
        let host = RequestMeta {
            ns: None,
            host: Some("ghcr.mirror.example:5000"),
        };
        assert_eq!(
            pick("org/app/manifests/1", &host).unwrap(),
            ("ghcr.io".into(), "org/app".into())
        );
        let k8s = RequestMeta {
            ns: None,
            host: Some("K8S.Mirror.Example"),
        };
        assert_eq!(
            pick("pause/manifests/3.9", &k8s).unwrap(),
            ("registry.k8s.io".into(), "pause".into())
        );
        let other = RequestMeta {
            ns: None,
            host: Some("ghcr.elsewhere.example"),
        };
        assert_eq!(pick("org/app/manifests/1", &other).unwrap().0, "docker.io");
    }

    #[test]
    fn unknown_host_prefixes_are_refused_and_the_bare_domain_is_the_default() {
        for host in [
            "nope.mirror.example",
            "Nope.Mirror.Example:5000",
            "a.ghcr.mirror.example",
            "ghcr-typo.mirror.example.",
        ] {
            let meta = RequestMeta {
                ns: None,
                host: Some(host),
            };
            let e = pick("org/app/manifests/1", &meta).unwrap_err();
            assert_eq!(e.status, StatusCode::NOT_FOUND, "{host}");
            assert_eq!(e.code, ErrorCode::NameUnknown, "{host}");
        }
        for host in ["mirror.example", "MIRROR.example:5000", "mirror.example."] {
            let meta = RequestMeta {
                ns: None,
                host: Some(host),
            };
            assert_eq!(
                pick("nginx/manifests/1", &meta).unwrap(),
                ("docker.io".into(), "library/nginx".into()),
                "{host}"
            );
            assert_eq!(
                pick("ghcr.io/org/app/manifests/1", &meta).unwrap().0,
                "ghcr.io"
            );
        }
        let trailing_dot = RequestMeta {
            ns: None,
            host: Some("ghcr.mirror.example."),
        };
        assert_eq!(
            pick("org/app/manifests/1", &trailing_dot).unwrap().0,
            "ghcr.io"
        );
    }

    #[test]
    fn unknown_ns_is_refused() {
        let meta = RequestMeta {
            ns: Some("evil.example"),
            host: None,
        };
        let e = pick("a/manifests/latest", &meta).unwrap_err();
        assert_eq!(e.code, ErrorCode::NameUnknown);
        assert!(e.message.contains("evil.example"));
    }
}
