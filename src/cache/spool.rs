//! A temporary file that a blob is written into before it is verified and
//! committed. Dropping an uncommitted spool deletes the file.

use crate::cache::CacheError;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A blob being written. Write with [`Spool::write`] from a blocking
/// context; readers share [`Spool::reader`], a second handle on the same
/// file that survives the rename at commit.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    reader: Arc<File>,
    armed: bool,
}

impl Spool {
    /// Create a new spool file at `path`.
    pub(crate) fn create(path: PathBuf) -> Result<Self, CacheError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| CacheError::io("create", &path, e))?;
        let reader = File::open(&path).map_err(|e| CacheError::io("open", &path, e))?;
        Ok(Self {
            path,
            file,
            reader: Arc::new(reader),
            armed: true,
        })
    }

    /// A read handle on the spool, valid after commit or deletion too.
    pub fn reader(&self) -> Arc<File> {
        Arc::clone(&self.reader)
    }

    /// Append a chunk (blocking).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), CacheError> {
        self.file
            .write_all(chunk)
            .map_err(|e| CacheError::io("write", &self.path, e))
    }

    /// Flush file data to disk (blocking).
    pub fn sync(&self) -> Result<(), CacheError> {
        self.file
            .sync_all()
            .map_err(|e| CacheError::io("fsync", &self.path, e))
    }

    /// The spool's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the file: it has been renamed into place.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
