//! The content-addressed store on local disk (paths: see `layout.rs`).
//!
//! A blob is written to a spool in `tmp/` and reaches its final path only
//! by `rename`, after its digest was verified and its data fsynced; the
//! directory is fsynced after the rename. A lookup opens the file, so the
//! hit it returns survives the blob's removal (by eviction: `keep`).

use crate::lifecycle::Keeper;
use crate::store::{BlobStore, BlobWriter, Hit, Lookup, check_proof, check_whole};
use crate::{
    BlobContent, CacheError, DataDirLock, DiskShelf, Layout, Lifecycle, LocalFile, RemovalHook,
    Spool, Upkeep, io_err,
};
use async_trait::async_trait;
use berth_oci::{Digest, Verified};
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Blobs on local disk.
#[derive(Debug)]
pub struct FsStore {
    layout: Layout,
    next_spool: AtomicU64,
    keeper: Arc<Keeper>,
    _lock: DataDirLock,
}

impl FsStore {
    /// Lock `root` for this process, open (creating if needed) the store
    /// under it and delete every spool a previous run left behind. Fails at
    /// once, touching nothing, when another process holds the lock. Returns
    /// the store, which holds the lock until dropped, and the number of
    /// stale spool files removed.
    pub fn open(root: &Path) -> Result<(Self, usize), CacheError> {
        let layout = Layout::new(root);
        let lock = DataDirLock::acquire(&layout)?;
        let (blobs, tmp) = (layout.blobs(), layout.tmp());
        for dir in [&blobs, &tmp] {
            std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        let mut swept = 0;
        for entry in std::fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
            let path = entry.map_err(io_err("list", &tmp))?.path();
            std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
            swept += 1;
        }
        let store = Self {
            layout,
            next_spool: AtomicU64::new(0),
            keeper: Arc::default(),
            _lock: lock,
        };
        Ok((store, swept))
    }

    /// Keep the store within `lifecycle` from now on (see `lifecycle/`),
    /// and write noted accesses to file times. Runs in tasks of the
    /// current tokio runtime.
    pub fn start_lifecycle(&self, lifecycle: Lifecycle) {
        let shelf = Arc::new(DiskShelf::new(self.layout.clone()));
        self.keeper.start(shelf, self.layout.clone(), lifecycle);
    }

    /// What maintenance works on: the blobs on disk, and who hears of
    /// their removal.
    pub fn upkeep(&self) -> Upkeep {
        Upkeep::new(
            Arc::new(DiskShelf::new(self.layout.clone())),
            Arc::clone(&self.keeper),
        )
    }

    /// The layout of the data directory this store lives in.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn spool(&self) -> Result<Spool, CacheError> {
        let n = self.next_spool.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self
            .layout
            .tmp()
            .join(format!("{}-{nanos}-{n}", std::process::id()));
        Spool::create(path)
    }
}

fn commit_blocking(
    layout: &Layout,
    keeper: &Keeper,
    spool: Spool,
    digest: &Digest,
) -> Result<(), CacheError> {
    spool.sync()?;
    let dest = layout.blob(digest);
    let blobs = layout.blobs();
    let dir = dest.parent().unwrap_or(&blobs);
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    std::fs::rename(spool.path(), &dest).map_err(io_err("rename", &dest))?;
    spool.disarm();
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))?;
    if let Ok(meta) = std::fs::metadata(&dest) {
        keeper.committed(meta.blocks() * 512);
    }
    Ok(())
}

/// Whether `bytes` more fit on the disk that holds `dir`:
/// [`CacheError::NoRoom`] when they do not. Unknown counts as room: the
/// write is tried, and a failing write is handled.
pub(crate) fn fits_on_disk(dir: &Path, bytes: u64) -> Result<(), CacheError> {
    match rustix::fs::statvfs(dir) {
        Ok(s) if s.f_bavail.saturating_mul(s.f_frsize) <= bytes => Err(CacheError::NoRoom(
            format!("{bytes} bytes do not fit on the cache disk"),
        )),
        _ => Ok(()),
    }
}

/// Run blocking store work (fsync, rename) on a thread of its own rather
/// than the runtime's blocking pool, which readers of slow clients may fill:
/// a fill's commit must not wait for them.
async fn on_own_thread<T: Send + 'static>(
    op: &'static str,
    work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    let thread = Path::new("(store thread)");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-store".to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| CacheError::io(op, thread, e))?;
    rx.await
        .map_err(|_| CacheError::io(op, thread, std::io::Error::other("the thread failed")))?
}

#[async_trait]
impl BlobStore for FsStore {
    async fn lookup(&self, digest: &Digest) -> Result<Lookup, CacheError> {
        let path = self.layout.blob(digest);
        // Inline: an open and fstat the dentry and inode caches answer take
        // microseconds, a hop to a blocking thread and back costs more than
        // that in context switches on every cached GET.
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(CacheError::io("open", &path, e)),
        };
        let size = file.metadata().map_err(io_err("stat", &path))?.len();
        self.keeper.last_use.note(digest);
        let content = LocalFile::new(Arc::new(file));
        Ok(Lookup::Hit(Hit::new(Arc::new(content), size)))
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>, CacheError> {
        let path = self.layout.blob(digest);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("stat", &path, e)),
        }
    }

    async fn reserve(&self, bytes: u64) -> Result<(), CacheError> {
        // A blob larger than the cap is not kept at all: the next eviction
        // pass would remove every other blob and then it.
        if let Some(max) = self.keeper.limit().filter(|max| bytes > *max) {
            return Err(CacheError::NoRoom(format!(
                "a blob of {bytes} bytes is larger than the cache's max_size ({max} bytes); \
                 raise max_size to cache it"
            )));
        }
        fits_on_disk(&self.layout.tmp(), bytes)
    }

    async fn begin(
        &self,
        digest: &Digest,
        _size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, CacheError> {
        Ok(Box::new(FsWriter {
            spool: self.spool()?,
            digest: *digest,
            layout: self.layout.clone(),
            keeper: Arc::clone(&self.keeper),
        }))
    }

    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError> {
        check_whole(digest, &bytes)?;
        let mut spool = self.spool()?;
        let layout = self.layout.clone();
        let keeper = Arc::clone(&self.keeper);
        let digest = *digest;
        on_own_thread("write", move || {
            spool.write_chunks(&[bytes])?;
            commit_blocking(&layout, &keeper, spool, &digest)
        })
        .await
    }

    fn record_use(&self, digest: &Digest) {
        self.keeper.last_use.note(digest);
    }

    fn on_removal(&self, hook: RemovalHook) {
        self.keeper.on_removal(hook);
    }

    fn usage(&self) -> crate::StoreUsage {
        crate::StoreUsage {
            bytes: self.keeper.usage.measured(),
            cap: self.keeper.limit(),
        }
    }
}

/// A blob being written to a spool on local disk.
#[derive(Debug)]
struct FsWriter {
    spool: Spool,
    digest: Digest,
    layout: Layout,
    keeper: Arc<Keeper>,
}

#[async_trait]
impl BlobWriter for FsWriter {
    fn tail(&self) -> Arc<dyn BlobContent> {
        Arc::new(LocalFile::new(self.spool.reader()))
    }

    fn write(&mut self, chunks: &[Bytes]) -> Result<(), CacheError> {
        self.spool.write_chunks(chunks)
    }

    async fn finish(self: Box<Self>, proof: Verified) -> Result<(), CacheError> {
        check_proof(&self.digest, &proof)?;
        let Self {
            spool,
            digest,
            layout,
            keeper,
        } = *self;
        on_own_thread("commit", move || {
            commit_blocking(&layout, &keeper, spool, &digest)
        })
        .await
    }

    fn abort(self: Box<Self>) {
        // Dropping the spool deletes its file.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::DigestVerifier;

    fn proof(bytes: &[u8]) -> Verified {
        let mut v = DigestVerifier::new(Digest::of(bytes));
        v.update(bytes);
        v.finish().unwrap()
    }

    #[tokio::test]
    async fn put_small_verifies_and_sweep_cleans_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let (store, swept) = FsStore::open(dir.path()).unwrap();
        assert_eq!(swept, 0);
        let d = Digest::of(b"manifest");
        let wrong = Digest::of(b"other");
        assert!(matches!(
            store
                .put_small(&wrong, Bytes::from_static(b"manifest"))
                .await,
            Err(CacheError::DigestMismatch { .. })
        ));
        assert!(matches!(store.lookup(&wrong).await.unwrap(), Lookup::Miss));
        store
            .put_small(&d, Bytes::from_static(b"manifest"))
            .await
            .unwrap();
        let Lookup::Hit(hit) = store.lookup(&d).await.unwrap() else {
            panic!("stored, yet missed")
        };
        assert_eq!(hit.size(), 8);
        assert_eq!(hit.bytes().await.unwrap(), &b"manifest"[..]);

        let leftover = store.spool().unwrap();
        std::mem::forget(leftover);
        drop(store);
        let (_store, swept) = FsStore::open(dir.path()).unwrap();
        assert_eq!(swept, 1);
    }

    #[tokio::test]
    async fn a_hit_outlives_the_removal_of_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = FsStore::open(dir.path()).unwrap();
        let d = Digest::of(b"layer bytes");
        store
            .put_small(&d, Bytes::from_static(b"layer bytes"))
            .await
            .unwrap();
        let Lookup::Hit(hit) = store.lookup(&d).await.unwrap() else {
            panic!("stored, yet missed")
        };
        std::fs::remove_file(store.layout().blob(&d)).unwrap();
        assert!(matches!(store.lookup(&d).await.unwrap(), Lookup::Miss));
        assert_eq!(hit.bytes().await.unwrap(), &b"layer bytes"[..]);
    }

    #[tokio::test]
    async fn a_writer_commits_only_what_its_proof_is_for() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = FsStore::open(dir.path()).unwrap();
        let d = Digest::of(b"blob");
        let mut writer = store.begin(&d, Some(4)).await.unwrap();
        writer.write(&[Bytes::from_static(b"blob")]).unwrap();
        let refused = writer.finish(proof(b"else")).await;
        assert!(matches!(refused, Err(CacheError::DigestMismatch { .. })));
        assert!(matches!(store.lookup(&d).await.unwrap(), Lookup::Miss));
        assert_eq!(std::fs::read_dir(store.layout().tmp()).unwrap().count(), 0);

        let mut writer = store.begin(&d, Some(4)).await.unwrap();
        writer
            .write(&[Bytes::from_static(b"bl"), Bytes::from_static(b"ob")])
            .unwrap();
        writer.finish(proof(b"blob")).await.unwrap();
        assert_eq!(std::fs::read(store.layout().blob(&d)).unwrap(), b"blob");
    }
}
