//! Last access, noted in memory and written to the store in batches
//! (file times on disk, see `shelf.rs`): a hit costs a map insert, not a
//! write. Each blob keeps the time of
//! its own last use, so the order of uses survives the batching. Bounded:
//! past [`MAX_NOTED`] distinct blobs, further ones wait for the next flush.

use crate::Shelf;
use berth_oci::Digest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// Distinct blobs noted between two flushes at most (about 64 bytes each).
const MAX_NOTED: usize = 1 << 20;

/// Blobs used since the last flush.
#[derive(Debug, Default)]
pub(crate) struct UseLog {
    noted: Mutex<HashMap<Digest, SystemTime>>,
}

impl UseLog {
    /// `digest` was just used.
    pub(crate) fn note(&self, digest: &Digest) {
        let mut noted = self
            .noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if noted.len() < MAX_NOTED || noted.contains_key(digest) {
            noted.insert(*digest, SystemTime::now());
        }
    }

    /// Whether `digest` was used since the last flush.
    pub(crate) fn was_used(&self, digest: &Digest) -> bool {
        self.noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(digest)
    }

    /// Write each noted blob's last use to the store, and forget them.
    /// Blocking.
    pub(crate) fn flush(&self, shelf: &dyn Shelf) {
        let noted = std::mem::take(
            &mut *self
                .noted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !noted.is_empty() {
            shelf.record_uses(noted.into_iter().collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_writes_the_use_to_the_file_time() {
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::Layout::new(dir.path());
        let digest = Digest::of(b"x");
        let path = layout.blob(&digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"x").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let log = UseLog::default();
        log.note(&digest);
        log.note(&Digest::of(b"gone"));
        assert!(log.was_used(&digest));
        log.flush(&crate::DiskShelf::new(layout.clone()));
        assert!(!log.was_used(&digest));
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(modified.elapsed().unwrap() < std::time::Duration::from_secs(60));
    }
}
