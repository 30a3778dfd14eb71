//! The blobs of a bucket as maintenance sees them (see `shelf.rs`): the
//! objects under the store's prefix, with their sizes. An object's time
//! cannot change without rewriting it, so last use is kept beside the
//! index in the data directory, as one empty marker file per blob whose
//! modification time is its last use; a blob never used since it was
//! stored counts from its upload. The markers are soft state: lost, the
//! upload times stand in.
//!
//! The calls block on the runtime the shelf was made in; they run on
//! threads of their own, never on its executor.

use crate::shelf::{Entry, MAX_MANIFEST, Shelf, set_modified};
use crate::{CacheError, io_err};
use berth_oci::Digest;
use futures_util::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// The blobs of a bucket under a prefix.
#[derive(Debug)]
pub struct ObjectShelf {
    objects: Arc<dyn ObjectStore>,
    /// `<prefix>blobs/sha256`: where the blobs' objects are.
    blobs: String,
    /// The directory of last-use markers.
    uses: PathBuf,
    runtime: tokio::runtime::Handle,
}

impl ObjectShelf {
    /// The blobs in `objects` under `prefix`, their last uses kept in
    /// `uses` (created if missing). Must be made within a tokio runtime
    /// with more than one thread, which its calls block on.
    pub fn new(
        objects: Arc<dyn ObjectStore>,
        prefix: &str,
        uses: PathBuf,
    ) -> Result<Self, CacheError> {
        std::fs::create_dir_all(&uses).map_err(io_err("create", &uses))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| CacheError::Io {
            op: "open",
            subject: "the bucket's blobs".to_owned(),
            error: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            objects,
            blobs: format!("{prefix}blobs/sha256"),
            uses,
            runtime,
        })
    }

    /// The key of `digest`'s object.
    pub(crate) fn key(&self, digest: &Digest) -> ObjectPath {
        ObjectPath::from(format!("{}/{}", self.blobs, digest.hex()))
    }

    fn marker(&self, digest: &Digest) -> PathBuf {
        self.uses.join(digest.hex())
    }

    fn failed(&self, op: &'static str, key: &ObjectPath, e: &object_store::Error) -> CacheError {
        CacheError::Io {
            op,
            subject: format!("object {key}"),
            error: std::io::Error::other(e.to_string()),
        }
    }
}

impl Shelf for ObjectShelf {
    fn scan(&self) -> Result<Vec<Entry>, CacheError> {
        let prefix = ObjectPath::from(self.blobs.as_str());
        let listed: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.objects.list(Some(&prefix)).try_collect())
            .map_err(|e| self.failed("list", &prefix, &e))?;
        let mut entries = Vec::with_capacity(listed.len());
        for meta in listed {
            let Some(digest) = meta
                .location
                .filename()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            else {
                continue;
            };
            let stored = SystemTime::from(meta.last_modified);
            let used = std::fs::metadata(self.marker(&digest))
                .and_then(|m| m.modified())
                .map_or(stored, |used| used.max(stored));
            entries.push(Entry {
                digest,
                bytes: meta.size,
                used,
            });
        }
        Ok(entries)
    }

    fn read_small(&self, digest: &Digest) -> Option<Vec<u8>> {
        let key = self.key(digest);
        self.runtime.block_on(async {
            let answer = self.objects.get(&key).await.ok()?;
            if answer.meta.size > MAX_MANIFEST {
                return None;
            }
            answer.bytes().await.ok().map(|b| b.to_vec())
        })
    }

    fn holds(&self, digest: &Digest) -> Result<bool, CacheError> {
        let key = self.key(digest);
        match self.runtime.block_on(self.objects.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("look up", &key, &e)),
        }
    }

    fn remove(&self, digest: &Digest) -> Result<bool, CacheError> {
        // S3 answers a delete of a missing key as a success: look first,
        // so that what is reported removed was there.
        if !self.holds(digest)? {
            return Ok(false);
        }
        let key = self.key(digest);
        self.runtime
            .block_on(self.objects.delete(&key))
            .map_err(|e| self.failed("delete", &key, &e))?;
        let _ = std::fs::remove_file(self.marker(digest));
        Ok(true)
    }

    fn record_uses(&self, uses: Vec<(Digest, SystemTime)>) {
        for (digest, used) in uses {
            let marker = self.marker(&digest);
            if std::fs::File::create(&marker).is_ok() {
                let _ = set_modified(&marker, used);
            }
        }
    }
}
