//! Learning each mirror's auth challenge before the first pull: an
//! anonymous `GET /v2/` per mirror when the upstream client is built (at
//! start, and for the upstreams a reload builds), so that even the first
//! request of a scope is sent with a token instead of costing a 401 round
//! trip. A mirror that does not answer keeps learning the old way, from
//! its first 401; the attempt counts for no breaker.

use crate::challenge::{AuthChallenge, parse_challenge};
use crate::mirror::Mirror;
use crate::{Upstream, UpstreamError, UpstreamSet};
use std::sync::Arc;

impl Upstream {
    /// Ask `mirror`'s `/v2/` anonymously and remember the challenge it
    /// answers with; `None` when it asks for none.
    pub(crate) async fn learn_challenge(
        &self,
        mirror: &Mirror,
    ) -> Result<Option<AuthChallenge>, UpstreamError> {
        let url = mirror
            .url
            .join("/v2/")
            .map_err(|e| self.invalid(&format!("cannot build URL: {e}")))?;
        let timeout = self.config.resilience.header_timeout;
        let sent = tokio::time::timeout(timeout, self.http.get(url).send())
            .await
            .map_err(|_| UpstreamError::Timeout {
                upstream: self.name().to_owned(),
                detail: format!("no answer to /v2/ within {timeout:?}"),
            })?
            .map_err(|e| UpstreamError::from_transport(self.name(), &e))?;
        let challenge = sent
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        if let Some(c) = &challenge {
            mirror.auth.remember(c.clone());
        }
        Ok(challenge)
    }

    /// Learn the challenge of every mirror not known yet.
    pub async fn learn_challenges(&self) {
        for mirror in &self.mirrors {
            if mirror.auth.challenge().is_some() {
                continue;
            }
            match self.learn_challenge(mirror).await {
                Ok(Some(_)) => {
                    tracing::info!(upstream = self.name(), mirror = %mirror.label(), "upstream challenge learned");
                }
                Ok(None) => {
                    tracing::debug!(upstream = self.name(), mirror = %mirror.label(), "upstream asks for no token");
                }
                Err(e) => {
                    tracing::debug!(upstream = self.name(), mirror = %mirror.label(), error = %e, "upstream challenge not learned ahead; the first request will learn it");
                }
            }
        }
    }
}

impl UpstreamSet {
    /// Learn every upstream's challenges in the background.
    pub fn learn_challenges(&self) {
        for upstream in self.all() {
            let upstream = Arc::clone(upstream);
            tokio::spawn(async move { upstream.learn_challenges().await });
        }
    }
}
