//! A temporary file that a blob is written into before it is verified and
//! committed. Dropping an uncommitted spool deletes the file.

use crate::CacheError;
use bytes::Bytes;
use std::fs::File;
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A blob being written. Write with [`Spool::write`] from a blocking
/// context; readers share [`Spool::reader`], a second handle on the same
/// file that survives the rename at commit.
#[derive(Debug)]
pub(crate) struct Spool {
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
    pub(crate) fn reader(&self) -> Arc<File> {
        Arc::clone(&self.reader)
    }

    /// Append chunks in order with as few `writev` calls as they take
    /// (blocking).
    pub(crate) fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<(), CacheError> {
        let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(CacheError::io("write", &self.path, e));
                }
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CacheError::io("write", &self.path, e)),
            }
        }
        Ok(())
    }

    /// Flush file data to disk (blocking).
    pub(crate) fn sync(&self) -> Result<(), CacheError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let mut spool = Spool::create(path.clone()).unwrap();
        let chunks: Vec<Bytes> = (0..300u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i as usize % 7) + 1]))
            .collect();
        spool.write_chunks(&chunks).unwrap();
        spool.write_chunks(&[Bytes::from_static(b"tail")]).unwrap();
        let mut expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        expected.extend_from_slice(b"tail");
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        drop(spool);
        assert!(!path.exists(), "an uncommitted spool is deleted");
    }
}
