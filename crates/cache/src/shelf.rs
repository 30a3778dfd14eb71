//! The committed blobs of a store as maintenance sees them: listed with
//! their size and last use, read whole when small (manifests, to follow
//! what they name), removed one by one, and told when they were last used.
//! The lifecycle (eviction), the catalog (`cache du`, `ls`, pins), purge
//! and gc work through a [`Shelf`], never on a store's files or objects
//! directly, so they run the same on local disk and on a bucket.
//!
//! Blocking: called from threads of their own (an eviction pass, a
//! maintenance job, the CLI), never from the executor.

use crate::{CacheError, Layout, io_err};
use berth_oci::Digest;
use std::os::unix::fs::MetadataExt as _;
use std::time::SystemTime;

/// Largest blob read whole to follow what it names (a manifest).
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;

/// A committed blob.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Its digest.
    pub digest: Digest,
    /// Bytes it takes (on disk: whole blocks).
    pub bytes: u64,
    /// Last use (or when it was stored, if never used since).
    pub used: SystemTime,
}

/// The committed blobs of one store.
pub trait Shelf: Send + Sync + std::fmt::Debug {
    /// Every committed blob.
    fn scan(&self) -> Result<Vec<Entry>, CacheError>;

    /// The bytes of a stored blob up to [`MAX_MANIFEST`]; `None` when it is
    /// not stored, larger, or cannot be read.
    fn read_small(&self, digest: &Digest) -> Option<Vec<u8>>;

    /// Whether `digest` is stored.
    fn holds(&self, digest: &Digest) -> Result<bool, CacheError>;

    /// Remove a blob; `false` when it was not there.
    fn remove(&self, digest: &Digest) -> Result<bool, CacheError>;

    /// Record when each blob was last used (noted in memory meanwhile);
    /// a blob removed since is skipped.
    fn record_uses(&self, uses: Vec<(Digest, SystemTime)>);
}

/// The blobs of a store on local disk: files whose modification time is
/// their last use.
#[derive(Debug, Clone)]
pub struct DiskShelf {
    layout: Layout,
}

impl DiskShelf {
    /// The blobs under `layout`.
    pub fn new(layout: Layout) -> Self {
        Self { layout }
    }
}

impl Shelf for DiskShelf {
    fn scan(&self) -> Result<Vec<Entry>, CacheError> {
        let blobs = self.layout.blobs();
        let mut entries = Vec::new();
        for shard in std::fs::read_dir(&blobs).map_err(io_err("list", &blobs))? {
            let shard = shard.map_err(io_err("list", &blobs))?.path();
            let Ok(files) = std::fs::read_dir(&shard) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let Some(digest) = self.layout.blob_digest(&path) else {
                    continue;
                };
                // Removed since it was listed: nothing to count.
                let Ok(meta) = file.metadata() else {
                    continue;
                };
                entries.push(Entry {
                    digest,
                    bytes: meta.blocks() * 512,
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(entries)
    }

    fn read_small(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.layout.blob(digest);
        let size = std::fs::metadata(&path).ok()?.len();
        (size <= MAX_MANIFEST)
            .then(|| std::fs::read(&path).ok())
            .flatten()
    }

    fn holds(&self, digest: &Digest) -> Result<bool, CacheError> {
        let path = self.layout.blob(digest);
        match std::fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::io("stat", &path, e)),
        }
    }

    fn remove(&self, digest: &Digest) -> Result<bool, CacheError> {
        let path = self.layout.blob(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::io("remove", &path, e)),
        }
    }

    fn record_uses(&self, uses: Vec<(Digest, SystemTime)>) {
        for (digest, used) in uses {
            let _ = set_modified(&self.layout.blob(&digest), used);
        }
    }
}

/// Set a file's access and modification times to `at`, without opening it.
pub(crate) fn set_modified(path: &std::path::Path, at: SystemTime) -> rustix::io::Result<()> {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let at = rustix::fs::Timespec {
        tv_sec: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: since.subsec_nanos().into(),
    };
    let times = rustix::fs::Timestamps {
        last_access: at,
        last_modification: at,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty())
}
