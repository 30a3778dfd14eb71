//! Tag lists and referrers: small answers that change often. Each is kept
//! for the upstream's `list_ttl`, fetched once however many clients ask
//! meanwhile, and served stale when upstream fails, like a tag. What the
//! edge says a valid answer is (a tag list's shape, the links it keeps)
//! is checked before anything is cached.

use crate::origin::Origin;
use crate::{Outcome, PullError, PullService};
use berth_cache::{ListingKey, ListingRecord};
use berth_oci::{RepoName, Resource};
use berth_upstream::RelayedAnswer;
use bytes::Bytes;

/// A tag list or referrers answer as it is served.
#[derive(Debug, Clone)]
pub struct Listing {
    /// `Content-Type`.
    pub content_type: String,
    /// `Link`, for the next page.
    pub link: Option<String>,
    /// The body (JSON).
    pub body: Bytes,
}

/// A listing and how it was answered.
#[derive(Debug, Clone)]
pub struct ListingAnswer {
    /// What to serve.
    pub listing: Listing,
    /// From the cache, upstream, or the cache because upstream failed.
    pub outcome: Outcome,
}

/// A listing request after routing.
#[derive(Debug)]
pub struct ListingRequest<'a> {
    /// The upstream it goes to, with its cache policy.
    pub origin: &'a Origin,
    /// Repository name as upstream knows it.
    pub repo: &'a RepoName,
    /// The request below the repository, with its checked query
    /// (`tags/list?n=10`).
    pub request: &'a str,
    /// Tag list or referrers.
    pub kind: Resource,
}

impl PullService {
    /// Answer a tag list or referrers request from the cache or upstream;
    /// `check` turns upstream's answer into what is served, or refuses it
    /// with the reason.
    pub async fn listing(
        &self,
        req: &ListingRequest<'_>,
        check: impl Fn(RelayedAnswer) -> Result<Listing, String> + Send + Sync,
    ) -> Result<ListingAnswer, PullError> {
        let answer = self.cached_or_fetched_listing(req, check).await?;
        self.metrics
            .cache(req.kind.as_str(), answer.outcome.as_str());
        Ok(answer)
    }

    async fn cached_or_fetched_listing(
        &self,
        req: &ListingRequest<'_>,
        check: impl Fn(RelayedAnswer) -> Result<Listing, String> + Send + Sync,
    ) -> Result<ListingAnswer, PullError> {
        let key = ListingKey {
            upstream: req.origin.name().to_owned(),
            repo: req.repo.to_string(),
            request: req.request.to_owned(),
        };
        let ttl_ms = req.origin.policy.list_ttl.as_millis() as u64;
        // In pass-through mode a client upstream has not confirmed for the
        // repository gets upstream's own answer (see `grants.rs`).
        let passthrough = req.origin.is_passthrough();
        let granted = !passthrough || self.grants.fresh(req.origin, req.repo);
        let fresh = |r: &ListingRecord| {
            granted && self.clock.now_ms().saturating_sub(r.checked_at_ms) < ttl_ms
        };
        if let Some(record) = self.index.listing(&key).await?
            && fresh(&record)
        {
            return Ok(answer(record, Outcome::Hit));
        }
        let id = key.id();
        let boarded = self.board(req.origin, &id).await?;
        let flight = &boarded.flight;
        let cached = self
            .index
            .listing(&key)
            .await?
            .filter(|_| !passthrough || self.grants.held(req.origin, req.repo));
        if let Some(record) = cached.clone().filter(|r| fresh(r)) {
            let outcome = if flight.waited {
                Outcome::Coalesced
            } else {
                Outcome::Hit
            };
            return Ok(answer(record, outcome));
        }
        let fetched = match &boarded.failed_before {
            // The request before this one just failed: share its failure.
            Some(e) => Err(e.clone()),
            None => {
                let fetched = req
                    .origin
                    .upstream
                    .get_relayed(
                        req.repo,
                        req.request,
                        req.kind,
                        req.origin.client_authorization(),
                    )
                    .await
                    .map_err(PullError::from)
                    .and_then(|answer| {
                        check(answer).map_err(|detail| PullError::Unusable {
                            upstream: req.origin.name().to_owned(),
                            detail,
                        })
                    });
                if let Err(e) = &fetched {
                    self.landed::<()>(&id, &Err(e.clone()));
                }
                fetched
            }
        };
        let listing = match fetched {
            Ok(listing) => {
                if passthrough {
                    self.grants.confirm(req.origin, req.repo);
                }
                listing
            }
            Err(PullError::Upstream(e)) if e.is_outage() => match cached {
                Some(record) => {
                    tracing::warn!(request = req.request, error = %e, "upstream failed; serving cached listing (stale-if-error)");
                    return Ok(answer(record, Outcome::Stale));
                }
                None => return Err(e.into()),
            },
            Err(e) => return Err(e),
        };
        if let Ok(body) = std::str::from_utf8(&listing.body) {
            let record = ListingRecord {
                content_type: listing.content_type.clone(),
                link: listing.link.clone(),
                body: body.to_owned(),
                checked_at_ms: self.clock.now_ms(),
            };
            self.index.put_listing(&key, record).await?;
        }
        Ok(ListingAnswer {
            listing,
            outcome: Outcome::Miss,
        })
    }
}

fn answer(record: ListingRecord, outcome: Outcome) -> ListingAnswer {
    ListingAnswer {
        listing: Listing {
            content_type: record.content_type,
            link: record.link,
            body: Bytes::from(record.body),
        },
        outcome,
    }
}
