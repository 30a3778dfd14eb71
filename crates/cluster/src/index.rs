//! The index shared by the replicas: every record is written to this
//! replica's own index and to Redis, and read from Redis first, so that a
//! tag revalidated by one replica is fresh for all. When Redis cannot
//! answer, or holds nothing for a key (it lost its data, or the record
//! expired there), the local index answers: Redis is soft state.
//!
//! A tag's record in Redis carries the newest upstream confirmation in
//! it, and a write older than what Redis holds is refused by a script: a
//! replica that wakes up from a pause cannot move a tag back.

use crate::Redis;
use crate::keys;
use async_trait::async_trait;
use berth_cache::{CacheError, IndexStore, ListingKey, ListingRecord, RepoKey, TagKey, TagRecord};
use berth_oci::Digest;
use redis::AsyncCommands as _;
use std::sync::Arc;

/// How long a record lives in Redis after its last write: far longer than
/// any TTL, short enough that Redis does not keep what nobody pulls.
const RECORD_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;

/// Store a tag's record unless Redis holds a newer one.
/// KEYS[1]: the tag; ARGV: the record, its newest confirmation (ms), the
/// lifetime (ms).
const PUT_TAG: &str = r"
local held = tonumber(redis.call('HGET', KEYS[1], 'at') or '0')
if tonumber(ARGV[2]) < held then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// This replica's index, shared through Redis.
#[derive(Debug)]
pub struct SharedIndex {
    redis: Arc<Redis>,
    local: Arc<dyn IndexStore>,
    put_tag: redis::Script,
}

impl SharedIndex {
    /// Share `local` through `redis`.
    pub fn new(redis: Arc<Redis>, local: Arc<dyn IndexStore>) -> Self {
        Self {
            redis,
            local,
            put_tag: redis::Script::new(PUT_TAG),
        }
    }

    async fn get(&self, key: String) -> Option<String> {
        self.redis
            .run("read a record", |mut c| async move {
                c.get::<_, Option<String>>(key).await
            })
            .await
            .flatten()
    }

    async fn set(&self, key: String, value: String) {
        self.redis
            .run("write a record", |mut c| async move {
                c.pset_ex::<_, _, ()>(key, value, RECORD_LIFETIME_MS).await
            })
            .await;
    }
}

fn json<T: serde::Serialize>(value: &T) -> Option<String> {
    serde_json::to_string(value).ok()
}

fn parsed<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

#[async_trait]
impl IndexStore for SharedIndex {
    async fn tag(&self, key: &TagKey) -> Result<Option<TagRecord>, CacheError> {
        let name = keys::tag(key);
        let shared = self
            .redis
            .run("read a tag", |mut c| async move {
                c.hget::<_, _, Option<String>>(name, "record").await
            })
            .await
            .flatten();
        match parsed(shared) {
            Some(record) => Ok(Some(record)),
            None => self.local.tag(key).await,
        }
    }

    async fn put_tag(&self, key: &TagKey, record: TagRecord) -> Result<(), CacheError> {
        let newest = record
            .answers
            .iter()
            .map(|a| a.checked_at_ms)
            .max()
            .unwrap_or(0);
        if let Some(text) = json(&record) {
            let (name, script) = (keys::tag(key), &self.put_tag);
            let repo = format!("{}\n{}", key.upstream, key.repo);
            self.redis
                .run("write a tag", |mut c| async move {
                    let mut invocation = script.key(name);
                    invocation.arg(text).arg(newest).arg(RECORD_LIFETIME_MS);
                    let _: i64 = invocation.invoke_async(&mut c).await?;
                    c.sadd::<_, _, ()>(keys::REPOSITORIES, repo).await
                })
                .await;
        }
        self.local.put_tag(key, record).await
    }

    async fn manifest_type(&self, digest: &Digest) -> Result<Option<String>, CacheError> {
        match self.get(keys::manifest_type(digest)).await {
            Some(t) => Ok(Some(t)),
            None => self.local.manifest_type(digest).await,
        }
    }

    async fn put_manifest_type(&self, digest: &Digest, media_type: &str) -> Result<(), CacheError> {
        self.set(keys::manifest_type(digest), media_type.to_owned())
            .await;
        self.local.put_manifest_type(digest, media_type).await
    }

    async fn listing(&self, key: &ListingKey) -> Result<Option<ListingRecord>, CacheError> {
        match parsed(self.get(keys::listing(key)).await) {
            Some(record) => Ok(Some(record)),
            None => self.local.listing(key).await,
        }
    }

    async fn put_listing(&self, key: &ListingKey, record: ListingRecord) -> Result<(), CacheError> {
        if let Some(text) = json(&record) {
            self.set(keys::listing(key), text).await;
        }
        self.local.put_listing(key, record).await
    }

    async fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, CacheError> {
        let (name, member) = (keys::links(repo), digest.to_string());
        let shared = self
            .redis
            .run("read a link", |mut c| async move {
                c.sismember::<_, _, bool>(name, member).await
            })
            .await;
        if shared == Some(true) {
            return Ok(true);
        }
        self.local.linked(repo, digest).await
    }

    async fn link(&self, repo: &RepoKey, digests: &[Digest]) -> Result<(), CacheError> {
        if !digests.is_empty() {
            let name = keys::links(repo);
            let members: Vec<String> = digests.iter().map(ToString::to_string).collect();
            self.redis
                .run("write links", |mut c| async move {
                    c.sadd::<_, _, ()>(&name, members).await?;
                    c.pexpire::<_, ()>(&name, RECORD_LIFETIME_MS as i64).await
                })
                .await;
        }
        self.local.link(repo, digests).await
    }

    async fn repositories(&self) -> Result<Vec<RepoKey>, CacheError> {
        let mut all = self.local.repositories().await?;
        let shared = self
            .redis
            .run("list repositories", |mut c| async move {
                c.smembers::<_, Vec<String>>(keys::REPOSITORIES).await
            })
            .await
            .unwrap_or_default();
        all.extend(shared.iter().filter_map(|id| {
            let (upstream, repo) = id.split_once('\n')?;
            Some(RepoKey {
                upstream: upstream.to_owned(),
                repo: repo.to_owned(),
            })
        }));
        all.sort();
        all.dedup();
        Ok(all)
    }
}
