//! Blobs in an S3-compatible object store (AWS S3, MinIO, Garage, Ceph
//! RGW, R2), through `object_store`.
//!
//! - A blob is the object `<prefix>blobs/sha256/<hex>`. It exists only once
//!   verified: a fill is written to a local spool (which waiting clients
//!   tail, and which feeds the upload), and [`BlobWriter::finish`] uploads
//!   it only with the proof that it hashed to its digest, in one PUT up to
//!   [`ONE_PUT`] bytes and as a multipart upload above, its parts sized so
//!   that no blob needs more than S3's 10,000. A failed multipart upload
//!   is aborted. Nothing partial is ever visible under a digest key.
//! - An object that already exists under the key is the same content (the
//!   key is its digest), so finding one is success: no conditional-write
//!   support is assumed of the server.
//! - A hit is the object's size and key; its bytes are read with ranged
//!   GETs, one streamed GET per span sent, never buffered whole. With
//!   redirects on, a hit also offers a presigned GET URL of its object,
//!   which the edge answers a client's GET with.

use crate::lifecycle::Keeper;
use crate::s3_upload::{PartUploader, commit, failed};
use crate::store::{BlobStore, BlobWriter, Hit, Lookup, check_proof, check_whole};
use crate::{
    BlobContent, ByteStream, CacheError, Layout, Lifecycle, LocalFile, ObjectShelf, RemovalHook,
    Shelf, Spool, StoreUsage, Upkeep,
};
use async_trait::async_trait;
use berth_oci::{Digest, Verified};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::signer::{Method, Signer};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload};
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An S3 bucket (and key prefix) holding blobs, with a local directory for
/// the spools of fills in progress.
#[derive(Debug)]
pub struct S3Store {
    objects: Arc<dyn ObjectStore>,
    shelf: Arc<ObjectShelf>,
    spools: PathBuf,
    next_spool: AtomicU64,
    redirects: Option<Arc<Redirects>>,
    keeper: Arc<Keeper>,
}

/// What presigns a hit's URL, and for how long it is valid.
#[derive(Debug)]
struct Redirects {
    signer: Arc<dyn Signer>,
    valid_for: Duration,
}

impl S3Store {
    /// Blobs in `objects` under `prefix` (empty, or ending in `/`), fills
    /// spooled in the data directory `layout` (leftovers removed), which
    /// also keeps their last uses. Made within a tokio runtime (see
    /// [`ObjectShelf::new`]).
    pub fn new(
        objects: Arc<dyn ObjectStore>,
        prefix: &str,
        layout: &Layout,
    ) -> Result<Self, CacheError> {
        let spools = layout.tmp().join("uploads");
        std::fs::create_dir_all(&spools).map_err(|e| CacheError::io("create", &spools, e))?;
        if let Ok(entries) = std::fs::read_dir(&spools) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let shelf = ObjectShelf::new(Arc::clone(&objects), prefix, layout.last_uses())?;
        Ok(Self {
            objects,
            shelf: Arc::new(shelf),
            spools,
            next_spool: AtomicU64::new(0),
            redirects: None,
            keeper: Arc::default(),
        })
    }

    /// Keep the bucket within `lifecycle` from now on (objects deleted by
    /// age and by last use past `max_size`; see `lifecycle/`). `layout`:
    /// the data directory, whose index names the pinned tags.
    pub fn start_lifecycle(&self, layout: Layout, lifecycle: Lifecycle) {
        let shelf: Arc<dyn Shelf> = self.shelf.clone();
        self.keeper.start(shelf, layout, lifecycle);
    }

    /// What maintenance works on: the bucket's blobs, and who hears of
    /// their removal.
    pub fn upkeep(&self) -> Upkeep {
        Upkeep::new(self.shelf.clone(), Arc::clone(&self.keeper))
    }

    /// Let hits offer a GET URL presigned by `signer`, valid for
    /// `valid_for` (`redirect = true`).
    #[must_use]
    pub fn with_redirects(mut self, signer: Arc<dyn Signer>, valid_for: Duration) -> Self {
        self.redirects = Some(Arc::new(Redirects { signer, valid_for }));
        self
    }

    /// The key of `digest`'s object.
    fn key(&self, digest: &Digest) -> ObjectPath {
        self.shelf.key(digest)
    }

    /// Store `size` bytes of `content`, proven by `proof` to be `digest`,
    /// as its object, through `parts` streamed already if any (a tier in
    /// front of the bucket commits through here).
    pub(crate) async fn put_verified(
        &self,
        digest: &Digest,
        content: &dyn BlobContent,
        size: u64,
        proof: &Verified,
        parts: Option<PartUploader>,
    ) -> Result<(), CacheError> {
        check_proof(digest, proof)?;
        commit(&self.objects, &self.key(digest), content, size, parts).await?;
        self.keeper.committed(size);
        Ok(())
    }

    /// Start streaming the parts of `digest`'s fill, `spool` growing to
    /// `size` bytes, when it is large enough to go up in parts.
    pub(crate) fn start_parts(
        &self,
        digest: &Digest,
        spool: Arc<dyn BlobContent>,
        size: Option<u64>,
    ) -> Option<PartUploader> {
        PartUploader::start(&self.objects, &self.key(digest), spool, size)
    }

    /// A writer of `digest` spooling locally; with `stream_parts`, its parts
    /// go up while it is written, else all of it once it is finished.
    fn writer(
        &self,
        digest: &Digest,
        size: Option<u64>,
        stream_parts: bool,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        let n = self.next_spool.fetch_add(1, Ordering::Relaxed);
        let path = self.spools.join(format!("{}-{n}", digest.hex()));
        let spool = Spool::create(path)?;
        let tail = Arc::new(LocalFile::new(spool.reader()));
        Ok(Box::new(S3Writer {
            parts: stream_parts
                .then(|| self.start_parts(digest, tail, size))
                .flatten(),
            spool,
            written: 0,
            size,
            digest: *digest,
            key: self.key(digest),
            objects: Arc::clone(&self.objects),
            keeper: Arc::clone(&self.keeper),
        }))
    }

    /// The object's size, `None` when there is none.
    async fn head(&self, key: &ObjectPath) -> Result<Option<u64>, CacheError> {
        match self.objects.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("look up", key, e)),
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn lookup(&self, digest: &Digest) -> Result<Lookup, CacheError> {
        let key = self.key(digest);
        Ok(match self.head(&key).await? {
            Some(size) => {
                self.keeper.last_use.note(digest);
                let content = StoredObject {
                    objects: Arc::clone(&self.objects),
                    key,
                    redirects: self.redirects.clone(),
                };
                Lookup::Hit(Hit::new(Arc::new(content), size))
            }
            None => Lookup::Miss,
        })
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>, CacheError> {
        self.head(&self.key(digest)).await
    }

    async fn reserve(&self, bytes: u64) -> Result<(), CacheError> {
        if let Some(max) = self.keeper.limit().filter(|max| bytes > *max) {
            return Err(CacheError::NoRoom(format!(
                "a blob of {bytes} bytes is larger than the cache's max_size ({max} bytes); \
                 raise max_size to cache it"
            )));
        }
        // The spool on local disk needs the room too.
        crate::fs::fits_on_disk(&self.spools, bytes)
    }

    async fn begin(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        self.writer(digest, size, true)
    }

    async fn begin_copy(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        self.writer(digest, size, false)
    }

    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError> {
        check_whole(digest, &bytes)?;
        let key = self.key(digest);
        if self.head(&key).await?.is_some() {
            return Ok(());
        }
        let size = bytes.len() as u64;
        self.objects
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(|e| failed("write", &key, e))?;
        self.keeper.committed(size);
        Ok(())
    }

    fn record_use(&self, digest: &Digest) {
        self.keeper.last_use.note(digest);
    }

    fn on_removal(&self, hook: RemovalHook) {
        self.keeper.on_removal(hook);
    }

    fn usage(&self) -> StoreUsage {
        StoreUsage {
            bytes: self.keeper.usage.measured(),
            cap: self.keeper.limit(),
        }
    }
}

/// A stored object's bytes, read with ranged GETs.
#[derive(Debug)]
struct StoredObject {
    objects: Arc<dyn ObjectStore>,
    key: ObjectPath,
    redirects: Option<Arc<Redirects>>,
}

#[async_trait]
impl BlobContent for StoredObject {
    async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let range = offset..offset + len as u64;
        let bytes = self
            .objects
            .get_range(&self.key, range)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if bytes.len() != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("object {} ended early", self.key),
            ));
        }
        Ok(bytes)
    }

    fn read_now(&self, _offset: u64, _len: usize) -> Option<std::io::Result<Bytes>> {
        None
    }

    async fn redirect_url(&self) -> Option<String> {
        let redirects = self.redirects.as_ref()?;
        let signed = redirects
            .signer
            .signed_url(Method::GET, &self.key, redirects.valid_for)
            .await;
        match signed {
            Ok(url) => Some(url.to_string()),
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "cannot presign a URL; serving the bytes");
                None
            }
        }
    }

    fn stream_range(&self, start: u64, end: u64) -> Option<ByteStream> {
        let objects = Arc::clone(&self.objects);
        let key = self.key.clone();
        let get = async move {
            let options = GetOptions {
                range: Some(GetRange::Bounded(start..end)),
                ..GetOptions::default()
            };
            objects.get_opts(&key, options).await
        };
        let stream = futures_util::stream::once(get)
            .map_ok(|answer| answer.into_stream())
            .try_flatten()
            .map_err(|e| std::io::Error::other(e.to_string()));
        Some(Box::pin(stream))
    }
}

/// A blob being written: spooled locally, its parts uploaded as they are
/// written, the upload completed once verified.
#[derive(Debug)]
struct S3Writer {
    spool: Spool,
    parts: Option<PartUploader>,
    written: u64,
    size: Option<u64>,
    digest: Digest,
    key: ObjectPath,
    objects: Arc<dyn ObjectStore>,
    keeper: Arc<Keeper>,
}

#[async_trait]
impl BlobWriter for S3Writer {
    fn tail(&self) -> Arc<dyn BlobContent> {
        Arc::new(LocalFile::new(self.spool.reader()))
    }

    fn write(&mut self, chunks: &[Bytes]) -> Result<(), CacheError> {
        self.spool.write_chunks(chunks)?;
        self.written += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        if let Some(parts) = &self.parts {
            parts.written(self.written);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>, proof: Verified) -> Result<(), CacheError> {
        check_proof(&self.digest, &proof)?;
        if let Some(size) = self.size
            && size != self.written
        {
            return Err(CacheError::Io {
                op: "upload",
                subject: format!("object {}", self.key),
                error: std::io::Error::other(format!("{} bytes written of {size}", self.written)),
            });
        }
        let spooled = LocalFile::new(self.spool.reader());
        commit(&self.objects, &self.key, &spooled, self.written, self.parts).await?;
        self.keeper.committed(self.written);
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}
