//! Pass-through relays: a client's writes (a push, where `push = true`)
//! and its token requests go upstream with the client's own credentials.
//! The engine decides what the upstream's configuration allows (writes
//! at all; which scopes and parameters reach the realm) and learns from
//! the answers (a credential upstream accepted; a pushed tag whose cached
//! answers must go). The edge turns client requests into these and the
//! answers back into responses.

use crate::{Origin, PullError, PullService};
use berth_config::AuthMode;
use berth_oci::{Reference, RepoName};
use berth_upstream::{TokenAsk, TokenReply, Upstream, Write, WriteAnswer};
use bytes::Bytes;

/// Where a write goes, below the repository.
#[derive(Debug, Clone, Copy)]
pub enum WriteTarget<'a> {
    /// `POST blobs/uploads/`: start an upload.
    NewUpload,
    /// `PATCH`/`PUT`/`GET blobs/uploads/<session>`: go on with one.
    Upload(&'a str),
    /// `PUT manifests/<reference>`.
    Manifest(&'a Reference),
}

/// A client's write as it goes upstream.
#[derive(Debug)]
pub struct ClientWrite<'a> {
    /// Where, below the repository (as upstream names it).
    pub target: WriteTarget<'a>,
    /// POST, PATCH, PUT (or GET of an upload's state).
    pub method: http::Method,
    /// The query to send, already checked by the edge.
    pub query: Option<&'a str>,
    /// The client's request headers (the transport sends only those a
    /// write needs).
    pub headers: &'a http::HeaderMap,
}

impl PullService {
    /// Whether `origin` takes writes: pass-through mode with `push` on.
    pub fn takes_writes(origin: &Origin) -> bool {
        origin.is_passthrough() && origin.upstream.config().push
    }

    /// Forward `write` to `repo` at `origin`, its body streamed. The caller
    /// has checked [`PullService::takes_writes`]. A credential upstream
    /// did not refuse counts as confirmed; a tag written is no longer
    /// answered from the cache.
    pub async fn forward_write<S, E>(
        &self,
        origin: &Origin,
        repo: &RepoName,
        write: &ClientWrite<'_>,
        body: S,
    ) -> Result<WriteAnswer, PullError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let path = match write.target {
            WriteTarget::NewUpload => format!("{repo}/blobs/uploads/"),
            WriteTarget::Upload(session) => format!("{repo}/blobs/uploads/{session}"),
            WriteTarget::Manifest(reference) => format!("{repo}/manifests/{reference}"),
        };
        let sent = Write {
            method: write.method.clone(),
            path: &path,
            query: write.query,
            headers: write.headers,
            client: origin.client_authorization(),
        };
        let answer = origin.upstream.forward_write(&sent, body).await?;
        if !matches!(answer.status, 401 | 403) {
            self.credential_accepted(origin);
        }
        if let WriteTarget::Manifest(Reference::Tag(tag)) = write.target
            && (200..300).contains(&answer.status)
            && let Err(e) = self.forget_tag(origin, repo, tag.as_str()).await
        {
            tracing::warn!(error = %e, "could not drop the cached answers of a pushed tag");
        }
        Ok(answer)
    }

    /// Relay a client's token request to `upstream`'s realm (a
    /// pass-through upstream): only the parameters the token protocols
    /// define go on, each scope rewritten to the upstream's names.
    pub async fn relay_token(
        &self,
        upstream: &Upstream,
        method: http::Method,
        params: Vec<(String, String)>,
        authorization: Option<&str>,
    ) -> Result<TokenReply, PullError> {
        debug_assert_eq!(upstream.config().auth_mode, AuthMode::Passthrough);
        let params = relayed_params(upstream, params);
        let ask = TokenAsk {
            method,
            params: &params,
            authorization,
        };
        Ok(upstream.relay_token(&ask).await?)
    }
}

/// The parameters of a token request that go on to the realm: only those
/// the token protocols define (GET and the OAuth2 POST), their names
/// matched in any case and passed on in lower case, every scope rewritten
/// to the upstream's names (see `upstream_scope`); `service` is the
/// upstream's own, added by the transport.
fn relayed_params(upstream: &Upstream, params: Vec<(String, String)>) -> Vec<(String, String)> {
    const KNOWN: [&str; 9] = [
        "scope",
        "account",
        "client_id",
        "offline_token",
        "grant_type",
        "access_type",
        "refresh_token",
        "username",
        "password",
    ];
    params
        .into_iter()
        .filter_map(|(k, v)| {
            let name = KNOWN.into_iter().find(|n| k.eq_ignore_ascii_case(n))?;
            let value = if name == "scope" {
                upstream_scope(upstream, &v)?
            } else {
                v
            };
            Some((name.to_owned(), value))
        })
        .collect()
}

/// A client's scope as the upstream knows it: the repository name as
/// routed (without the upstream's own path prefix, with `library/` where
/// configured), and push only where push is on. Scopes of other kinds, and
/// names that are no repository name, are dropped.
fn upstream_scope(upstream: &Upstream, scope: &str) -> Option<String> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind != "repository" {
        return None;
    }
    let config = upstream.config();
    let mut name: RepoName = name.parse().ok()?;
    if let Some((first, rest)) = name.split_first()
        && (first == config.name || config.aliases.iter().any(|a| a == first))
    {
        name = rest;
    }
    if config.auto_library && name.segments() == 1 {
        name = name.with_prefix("library").ok()?;
    }
    let allowed: Vec<&str> = actions
        .split(',')
        .filter(|a| *a == "pull" || (*a == "push" && config.push))
        .collect();
    if allowed.is_empty() {
        return None;
    }
    Some(format!("repository:{name}:{}", allowed.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_config::Config;
    use berth_metrics::Metrics;
    use berth_upstream::UpstreamSet;
    use std::sync::Arc;

    fn hub(push: bool) -> Arc<Upstream> {
        let mut config = Config::embedded(&|_| None).unwrap();
        let mut hub = config.upstreams.remove(0);
        assert_eq!(hub.name, "docker.io");
        hub.auth_mode = AuthMode::Passthrough;
        hub.push = push;
        let set = UpstreamSet::new(&[hub], &Arc::new(Metrics::new())).unwrap();
        Arc::clone(set.by_name("docker.io").unwrap())
    }

    #[test]
    fn only_known_parameters_go_to_the_realm_whatever_their_case() {
        let hub = hub(false);
        let given = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let relayed = relayed_params(
            &hub,
            given(&[
                ("Scope", "repository:alpine:push,delete"),
                ("SCOPE", "repository:alpine:pull,push"),
                ("Account", "alice"),
                ("foo", "bar"),
                ("Service", "elsewhere"),
                ("grant_type", "password"),
            ]),
        );
        assert_eq!(
            relayed,
            given(&[
                ("scope", "repository:library/alpine:pull"),
                ("account", "alice"),
                ("grant_type", "password"),
            ])
        );
    }

    #[test]
    fn scopes_are_rewritten_to_upstream_names() {
        let up = hub(false);
        let scope = |s: &str| upstream_scope(&up, s);
        assert_eq!(
            scope("repository:alpine:pull").as_deref(),
            Some("repository:library/alpine:pull")
        );
        assert_eq!(
            scope("repository:docker.io/org/app:pull").as_deref(),
            Some("repository:org/app:pull")
        );
        assert_eq!(
            scope("repository:org/app:pull,push").as_deref(),
            Some("repository:org/app:pull")
        );
        assert_eq!(scope("repository:org/app:push"), None);
        assert_eq!(scope("registry:catalog:*"), None);
        assert_eq!(scope("repository:../x:pull"), None);
        let pushing = hub(true);
        assert_eq!(
            upstream_scope(&pushing, "repository:org/app:pull,push").as_deref(),
            Some("repository:org/app:pull,push")
        );
    }
}
