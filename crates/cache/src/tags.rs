//! The answers cached for one tag. Upstream may answer one tag differently
//! by the client's `Accept` set (a list for a client that accepts lists,
//! one platform's manifest for one that does not), so a tag keeps one
//! answer per set it was asked with, each with the time upstream last
//! confirmed it. Which answer may serve which client is the rule of
//! `berth_oci::answer_serves`.

use berth_oci::answer_serves;
use serde::{Deserialize, Serialize};

/// Answers kept per tag at most; the least recently confirmed goes first.
const MAX_ANSWERS: usize = 8;

/// What identifies a tag: its answers are kept together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TagKey {
    /// Upstream name.
    pub upstream: String,
    /// Repository, after upstream routing.
    pub repo: String,
    /// The tag.
    pub tag: String,
}

impl TagKey {
    /// The key as one string: what the index file is named by the hash of,
    /// and what concurrent requests for the tag wait on.
    pub fn id(&self) -> String {
        format!("{}\n{}\n{}", self.upstream, self.repo, self.tag)
    }
}

/// What upstream answered for a tag to one `Accept` set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagAnswer {
    /// The `Accept` set asked with (`berth_oci::accept_key`).
    pub accept: String,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type, as its bytes give it.
    pub media_type: String,
    /// Manifest size in bytes.
    pub size: u64,
    /// Unix time in milliseconds of the last upstream confirmation.
    pub checked_at_ms: u64,
}

impl TagAnswer {
    /// Whether this answer is the tag's own content rather than one
    /// platform's manifest picked for a client that accepts no list: it
    /// is a list, or it was asked for by a set that accepts every kind of
    /// list.
    pub fn is_the_tag(&self) -> bool {
        berth_oci::is_whole_tag_answer(&self.media_type, &self.accept)
    }
}

/// The answers cached for one tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// One per `Accept` set asked with.
    pub answers: Vec<TagAnswer>,
}

impl TagRecord {
    /// The answers that may serve a client whose `Accept` set is
    /// `client`, the most recently confirmed first.
    pub fn serving(&self, client: &str) -> Vec<&TagAnswer> {
        let mut fit: Vec<&TagAnswer> = self
            .answers
            .iter()
            .filter(|a| answer_serves(&a.media_type, &a.accept, client))
            .collect();
        fit.sort_by_key(|a| std::cmp::Reverse(a.checked_at_ms));
        fit
    }

    /// Keep a fresh answer from upstream. It replaces the answer for the
    /// same `Accept` set. When it is the tag's own content and another
    /// such answer differs, the tag moved: every older answer goes.
    pub fn add(&mut self, answer: TagAnswer) {
        if answer.is_the_tag()
            && self
                .answers
                .iter()
                .any(|a| a.is_the_tag() && a.digest != answer.digest)
        {
            self.answers.clear();
        }
        self.answers.retain(|a| a.accept != answer.accept);
        self.answers.push(answer);
        if self.answers.len() > MAX_ANSWERS {
            self.answers
                .sort_by_key(|a| std::cmp::Reverse(a.checked_at_ms));
            self.answers.truncate(MAX_ANSWERS);
        }
    }

    /// Upstream confirmed `confirmed` (by its `Accept` set) at `now_ms`.
    /// When that answer is the tag's own content, the tag has not moved and
    /// every answer derived from it holds too; otherwise only it is
    /// confirmed.
    pub fn confirm(&mut self, confirmed: &str, now_ms: u64) {
        let whole = self
            .answers
            .iter()
            .any(|a| a.accept == confirmed && a.is_the_tag());
        for a in &mut self.answers {
            if whole || a.accept == confirmed {
                a.checked_at_ms = now_ms;
            }
        }
    }

    /// Drop the answer for one `Accept` set (upstream no longer gives it).
    pub fn forget(&mut self, accept: &str) {
        self.answers.retain(|a| a.accept != accept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_MEDIA_TYPES, accept_key};

    fn answer(accept: &str, digest: &str, media_type: &str, at: u64) -> TagAnswer {
        TagAnswer {
            accept: accept.to_owned(),
            digest: digest.to_owned(),
            media_type: media_type.to_owned(),
            size: 1,
            checked_at_ms: at,
        }
    }

    #[test]
    fn a_list_and_a_platform_answer_live_side_by_side_until_the_tag_moves() {
        let all = accept_key(MANIFEST_MEDIA_TYPES);
        let v2 = accept_key([DOCKER_MANIFEST]);
        let mut record = TagRecord::default();
        record.add(answer(&all, "list", DOCKER_MANIFEST_LIST, 1));
        record.add(answer(&v2, "amd64", DOCKER_MANIFEST, 2));
        // Each client gets its own kind of answer.
        let digests = |client: &str, r: &TagRecord| {
            r.serving(client)
                .iter()
                .map(|a| a.digest.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(digests(&all, &record), ["list"]);
        assert_eq!(digests(&v2, &record), ["amd64"]);
        // A confirmed platform answer confirms only itself; a confirmed
        // list confirms the tag, and with it every answer.
        record.confirm(&v2, 10);
        assert_eq!(
            record
                .answers
                .iter()
                .map(|a| a.checked_at_ms)
                .collect::<Vec<_>>(),
            [1, 10]
        );
        record.confirm(&all, 20);
        assert!(record.answers.iter().all(|a| a.checked_at_ms == 20));
        // A new list: the tag moved, and the platform answer goes with it.
        record.add(answer(&all, "list2", DOCKER_MANIFEST_LIST, 30));
        assert_eq!(digests(&all, &record), ["list2"]);
        assert!(digests(&v2, &record).is_empty());
    }

    #[test]
    fn answers_are_bounded() {
        let mut record = TagRecord::default();
        for (i, t) in MANIFEST_MEDIA_TYPES.iter().enumerate() {
            for (j, u) in MANIFEST_MEDIA_TYPES.iter().enumerate() {
                record.add(answer(&accept_key([*t, *u]), "d", t, (i * 10 + j) as u64));
            }
        }
        assert_eq!(record.answers.len(), MAX_ANSWERS);
        assert!(record.answers.iter().all(|a| a.checked_at_ms >= 40));
    }
}
