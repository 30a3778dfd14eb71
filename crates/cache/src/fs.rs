//! The content-addressed store on local disk.
//!
//! Layout under the data directory:
//! - `berth.lock`: held by the process that has the store open (see
//!   `lock.rs`); taken before anything else is touched;
//! - `blobs/sha256/<first two hex digits>/<hex>`: committed blobs and
//!   manifests, named by their verified digest;
//! - `tmp/`: spools being written, swept at start-up;
//! - `index/`: tag answers and manifest media types (see `index.rs`).
//!
//! A blob reaches its final path only by `rename` after its digest was
//! verified and its data fsynced; the directory is fsynced after the rename.

use crate::{BlobBytes, BlobStore, CacheError, DataDirLock, FileSpan, Spool, io_err};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Blobs on local disk.
#[derive(Debug)]
pub struct FsStore {
    blobs: PathBuf,
    tmp: PathBuf,
    next_spool: AtomicU64,
    _lock: DataDirLock,
}

impl FsStore {
    /// Lock `root` for this process, open (creating if needed) the store
    /// under it and delete every spool a previous run left behind. Fails at
    /// once, touching nothing, when another process holds the lock. Returns
    /// the store, which holds the lock until dropped, and the number of
    /// stale spool files removed.
    pub fn open(root: &Path) -> Result<(Self, usize), CacheError> {
        let lock = DataDirLock::acquire(root)?;
        let blobs = root.join("blobs").join("sha256");
        let tmp = root.join("tmp");
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
            blobs,
            tmp,
            next_spool: AtomicU64::new(0),
            _lock: lock,
        };
        Ok((store, swept))
    }

    /// Final path of a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.blobs, digest)
    }
}

/// The digest type guarantees 64 hex digits, so the path can never leave
/// the store.
fn blob_path(blobs: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    blobs.join(&hex[..2]).join(hex)
}

fn commit_blocking(blobs: &Path, spool: Spool, digest: &Digest) -> Result<(), CacheError> {
    spool.sync()?;
    let dest = blob_path(blobs, digest);
    let dir = dest.parent().unwrap_or(blobs);
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    std::fs::rename(spool.path(), &dest).map_err(io_err("rename", &dest))?;
    spool.disarm();
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
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
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, CacheError> {
        let path = self.blob_path(digest);
        // Inline, like the open in `read`: a lookup the dentry cache answers
        // takes a microsecond, a hop to a blocking thread and back costs
        // more than that in context switches on every cached GET.
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("stat", &path, e)),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<Option<BlobBytes>, CacheError> {
        let path = self.blob_path(digest);
        match std::fs::File::open(&path) {
            Ok(file) => Ok(Some(BlobBytes::File(FileSpan::complete(
                Arc::new(file),
                start,
                end,
            )))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("open", &path, e)),
        }
    }

    async fn read_small(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        let path = self.blob_path(digest);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("read", &path, e)),
        }
    }

    async fn put_small(&self, digest: &Digest, bytes: Bytes) -> Result<(), CacheError> {
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(CacheError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let mut spool = self.spool().await?;
        let blobs = self.blobs.clone();
        let digest = digest.clone();
        on_own_thread("write", move || {
            spool.write(&bytes)?;
            commit_blocking(&blobs, spool, &digest)
        })
        .await
    }

    async fn spool(&self) -> Result<Spool, CacheError> {
        let n = self.next_spool.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self.tmp.join(format!("{}-{nanos}-{n}", std::process::id()));
        Spool::create(path)
    }

    async fn has_room(&self, bytes: u64) -> bool {
        match rustix::fs::statvfs(&self.tmp) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize) > bytes,
            Err(_) => true, // unknown: try, and handle a failing write
        }
    }

    async fn commit(&self, spool: Spool, digest: &Digest) -> Result<(), CacheError> {
        let blobs = self.blobs.clone();
        let digest = digest.clone();
        on_own_thread("commit", move || commit_blocking(&blobs, spool, &digest)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(store.stat(&wrong).await.unwrap(), None);
        store
            .put_small(&d, Bytes::from_static(b"manifest"))
            .await
            .unwrap();
        assert_eq!(
            store.read_small(&d).await.unwrap().unwrap(),
            &b"manifest"[..]
        );
        assert_eq!(store.stat(&d).await.unwrap(), Some(8));

        let leftover = store.spool().await.unwrap();
        std::mem::forget(leftover);
        drop(store);
        let (_store, swept) = FsStore::open(dir.path()).unwrap();
        assert_eq!(swept, 1);
    }
}
