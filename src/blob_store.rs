//! The blob store `[storage]` asks for, opened with what comes with it:
//! its lifecycle (cap, age, pins) and the maintenance a serving berth
//! runs. On `fs`: the store under `data_dir`. On `s3`: the bucket, tried
//! at start so that wrong credentials, a missing bucket or an unreachable
//! endpoint stop the start with the key to look at; fills are spooled
//! under `data_dir`, which also keeps the index and last uses, and with
//! `local_tier_size` the local tier in front of the bucket, kept within
//! its size by a lifecycle of its own.

use anyhow::Context as _;
use berth_cache::{
    BlobStore, DataDirLock, FsIndex, FsStore, Layout, Maintenance, S3Store, TieredStore,
};
use berth_config::{Config, S3Settings, StorageSettings};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// How long a presigned URL a `307` points to stays valid.
const REDIRECT_VALID_FOR: Duration = Duration::from_secs(15 * 60);

/// An opened blob store and what serves beside it.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The blobs.
    pub(crate) blobs: Arc<dyn BlobStore>,
    /// What purge and gc run on.
    pub(crate) maintenance: Maintenance,
    /// Held for as long as berth serves `data_dir` (the fs store holds its
    /// own).
    _lock: Option<DataDirLock>,
}

/// Open the store `config` names. `index` is the index under `data_dir`,
/// opened by the caller.
pub(crate) async fn open(
    config: &Config,
    lifecycle: berth_cache::Lifecycle,
) -> anyhow::Result<(Opened, Arc<FsIndex>)> {
    let data_dir = Layout::new(&config.data_dir);
    let unusable = || format!("cannot use data_dir {}", config.data_dir.display());
    match &config.storage {
        StorageSettings::Fs => {
            let (blobs, swept) = FsStore::open(&config.data_dir).with_context(unusable)?;
            if swept > 0 {
                tracing::info!(
                    files = swept,
                    "removed unfinished downloads left by a previous run"
                );
            }
            blobs.start_lifecycle(lifecycle);
            let index = Arc::new(FsIndex::open(&data_dir).with_context(unusable)?);
            let blobs = Arc::new(blobs);
            let maintenance = Maintenance::new(blobs.upkeep(), data_dir, Arc::clone(&index));
            let opened = Opened {
                blobs,
                maintenance,
                _lock: None,
            };
            Ok((opened, index))
        }
        StorageSettings::S3(s3) => {
            std::fs::create_dir_all(&config.data_dir).with_context(unusable)?;
            let lock = DataDirLock::acquire(&data_dir).with_context(unusable)?;
            let index = Arc::new(FsIndex::open(&data_dir).with_context(unusable)?);
            let objects = connect(s3)?;
            probe(objects.as_ref(), s3).await?;
            let mut bucket =
                S3Store::new(objects.clone(), &s3.prefix, &data_dir).with_context(unusable)?;
            if s3.redirect {
                bucket = bucket.with_redirects(objects, REDIRECT_VALID_FOR);
            }
            bucket.start_lifecycle(data_dir.clone(), lifecycle);
            let maintenance =
                Maintenance::new(bucket.upkeep(), data_dir.clone(), Arc::clone(&index));
            let blobs: Arc<dyn BlobStore> = match s3.local_tier_size {
                None => {
                    tracing::info!(bucket = s3.bucket, prefix = s3.prefix, "blobs in S3");
                    Arc::new(bucket)
                }
                Some(capacity) => {
                    let root = data_dir.local_tier();
                    let (tier, _) = FsStore::open(&root).with_context(|| {
                        format!("cannot use the local tier in {}", root.display())
                    })?;
                    tier.start_lifecycle(berth_cache::Lifecycle {
                        max_size: Some(capacity),
                        ..berth_cache::Lifecycle::default()
                    });
                    tracing::info!(
                        bucket = s3.bucket,
                        prefix = s3.prefix,
                        local_tier_bytes = capacity,
                        "blobs in S3, hot ones on local disk too"
                    );
                    Arc::new(TieredStore::new(Arc::new(tier), Arc::new(bucket), capacity))
                }
            };
            let opened = Opened {
                blobs,
                maintenance,
                _lock: Some(lock),
            };
            Ok((opened, index))
        }
    }
}

/// How long the bucket may send nothing while berth waits on it.
const BUCKET_STALL: Duration = Duration::from_secs(30);

/// The S3 client `s3` describes; the standard `AWS_*` variables fill in
/// what the file leaves out.
pub(crate) fn connect(s3: &S3Settings) -> anyhow::Result<Arc<AmazonS3>> {
    // A few quick retries, never minutes: a client waits on a lookup. No
    // overall timeout: a cached blob's GET streams for as long as its
    // client takes to read it. But a bucket that sends nothing for
    // BUCKET_STALL while berth waits on it has stalled: the request fails
    // (a lookup counts as a read failure and the blob comes from upstream;
    // a response already under way is cut, and the client retries).
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        ..RetryConfig::default()
    };
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled()
        .with_read_timeout(BUCKET_STALL);
    let mut builder = AmazonS3Builder::from_env()
        .with_retry(retry)
        .with_client_options(client)
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_virtual_hosted_style_request(!s3.path_style);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint.as_str().trim_end_matches('/'))
            .with_allow_http(endpoint.scheme() == "http");
    }
    if let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret.expose());
    }
    let client = builder
        .build()
        .context("storage: cannot build the S3 client (check storage.endpoint, storage.region and the credentials)")?;
    Ok(Arc::new(client))
}

/// Try the bucket with one listing under the prefix: an answer proves the
/// endpoint, the bucket and the credentials.
pub(crate) async fn probe(objects: &dyn ObjectStore, s3: &S3Settings) -> anyhow::Result<()> {
    let prefix = object_store::path::Path::from(s3.prefix.trim_end_matches('/'));
    let listed = tokio::time::timeout(
        Duration::from_secs(20),
        objects.list_with_delimiter(Some(&prefix)),
    )
    .await;
    let e = match listed {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 20 s".to_owned(),
    };
    let key = if e.contains("NoSuchBucket") {
        "storage.bucket"
    } else if [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403",
    ]
    .iter()
    .any(|s| e.contains(s))
    {
        "storage.access_key_id / storage.secret_access_key"
    } else {
        "storage.endpoint"
    };
    anyhow::bail!("{key}: cannot use bucket {:?}: {e}", s3.bucket)
}
