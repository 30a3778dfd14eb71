//! Getting verified bytes into a bucket. Blobs up to [`ONE_PUT`] go up in
//! one PUT; larger ones as a multipart upload in parts of one fixed size
//! (as R2 requires), at least [`MIN_PART`], and large enough that no blob
//! needs more than S3's 10,000.
//!
//! A fill of known size above [`ONE_PUT`] streams its parts while it
//! downloads ([`PartUploader`]): each part goes up as soon as the spool
//! holds it, and the upload is completed only after the digest matched.
//! An upload that is not completed is aborted (and its parts were never
//! visible under any key); if streaming failed, the verified spool is
//! uploaded again whole.

use crate::{BlobContent, CacheError};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt as _, PutPayload};
use std::sync::Arc;
use tokio::sync::watch;

/// Blobs up to this size go up in one PUT; larger ones in parts.
pub const ONE_PUT: u64 = 16 << 20;
/// The smallest part S3 takes (but for the last).
const MIN_PART: u64 = 8 << 20;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;

/// The part size for a blob of `size` bytes: at least [`MIN_PART`], and
/// large enough that the blob fits in [`MAX_PARTS`] parts.
pub fn part_size(size: u64) -> u64 {
    MIN_PART.max(size.div_ceil(MAX_PARTS).next_multiple_of(1 << 20))
}

/// A failed object store call on `key`, as a cache error.
#[allow(clippy::needless_pass_by_value, reason = "a map_err adapter")]
pub(crate) fn failed(op: &'static str, key: &ObjectPath, e: object_store::Error) -> CacheError {
    CacheError::Io {
        op,
        subject: format!("object {key}"),
        error: std::io::Error::other(e.to_string()),
    }
}

/// `len` bytes of `content` at `offset`.
async fn read_part(
    content: &dyn BlobContent,
    key: &ObjectPath,
    offset: u64,
    len: u64,
) -> Result<Bytes, CacheError> {
    content
        .read_at(offset, usize::try_from(len).unwrap_or(usize::MAX))
        .await
        .map_err(|error| CacheError::Io {
            op: "read what is to be uploaded as",
            subject: format!("object {key}"),
            error,
        })
}

/// Whether `key` exists (same key, same content: the key is a digest).
pub(crate) async fn exists(
    objects: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
) -> Result<bool, CacheError> {
    match objects.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(failed("look up", key, e)),
    }
}

/// Upload the first `size` bytes of `content` as `key`: one PUT up to
/// [`ONE_PUT`] bytes, parts above; a failed multipart upload is aborted.
async fn upload(
    objects: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
    content: &dyn BlobContent,
    size: u64,
) -> Result<(), CacheError> {
    if size <= ONE_PUT {
        let bytes = read_part(content, key, 0, size).await?;
        return objects
            .put(key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| failed("write", key, e));
    }
    let mut upload = objects
        .put_multipart(key)
        .await
        .map_err(|e| failed("start uploading", key, e))?;
    let mut sent = 0;
    let part = part_size(size);
    while size - sent > part {
        if let Err(e) = send_part(upload.as_mut(), content, key, sent, part).await {
            let _ = upload.abort().await;
            return Err(e);
        }
        sent += part;
    }
    finish_upload(upload, content, key, sent, size).await
}

/// Store `size` verified bytes of `content` as `key`: nothing when the
/// object exists; else through the parts streamed already, if any, and
/// whole when there were none or streaming failed.
pub(crate) async fn commit(
    objects: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
    content: &dyn BlobContent,
    size: u64,
    parts: Option<PartUploader>,
) -> Result<(), CacheError> {
    if exists(objects, key).await? {
        return Ok(()); // the parts, dropped, are aborted
    }
    if let Some(parts) = parts {
        match parts.complete(content, key, size).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(%key, error = %e, "streamed upload failed; uploading the verified blob whole");
            }
        }
    }
    upload(objects, key, content, size).await
}

/// Send `len` bytes of `content` at `offset` as the next part.
async fn send_part(
    upload: &mut dyn MultipartUpload,
    content: &dyn BlobContent,
    key: &ObjectPath,
    offset: u64,
    len: u64,
) -> Result<(), CacheError> {
    let bytes = read_part(content, key, offset, len).await?;
    upload
        .put_part(PutPayload::from(bytes))
        .await
        .map_err(|e| failed("upload a part of", key, e))
}

/// Send what follows the first `sent` of `size` bytes as the last part and
/// complete the upload; abort it on any failure.
async fn finish_upload(
    mut upload: Box<dyn MultipartUpload>,
    content: &dyn BlobContent,
    key: &ObjectPath,
    sent: u64,
    size: u64,
) -> Result<(), CacheError> {
    let done = async {
        if size > sent {
            send_part(upload.as_mut(), content, key, sent, size - sent).await?;
        }
        upload
            .complete()
            .await
            .map(|_| ())
            .map_err(|e| failed("complete", key, e))
    }
    .await;
    if done.is_err() {
        let _ = upload.abort().await;
    }
    done
}

/// How far a fill's spool is written, and whether it is finished.
#[derive(Debug, Clone, Copy)]
struct Written {
    bytes: u64,
    done: bool,
}

/// An upload whose full parts are sent: the first `sent` bytes.
#[derive(Debug)]
struct Pending {
    upload: Box<dyn MultipartUpload>,
    sent: u64,
}

/// The parts of a fill being uploaded while it is written. Dropped
/// without [`PartUploader::complete`], its upload is aborted.
#[derive(Debug)]
pub(crate) struct PartUploader {
    written: watch::Sender<Written>,
    task: tokio::task::JoinHandle<Result<Pending, CacheError>>,
}

impl PartUploader {
    /// Stream `spool` (growing to `size` bytes) to `key` in parts, when
    /// `size` is known and above [`ONE_PUT`]. Within a tokio runtime.
    pub(crate) fn start(
        objects: &Arc<dyn ObjectStore>,
        key: &ObjectPath,
        spool: Arc<dyn BlobContent>,
        size: Option<u64>,
    ) -> Option<Self> {
        let size = size.filter(|size| *size > ONE_PUT)?;
        let (written, watching) = watch::channel(Written {
            bytes: 0,
            done: false,
        });
        let (objects, key) = (Arc::clone(objects), key.clone());
        let part = part_size(size);
        let task = tokio::spawn(async move {
            send_parts(&objects, &key, spool.as_ref(), part, watching).await
        });
        Some(Self { written, task })
    }

    /// The spool holds `bytes` now (from the writer's thread).
    pub(crate) fn written(&self, bytes: u64) {
        self.written.send_replace(Written { bytes, done: false });
    }

    /// Send the last part of the `size` bytes in `spool` and complete the
    /// upload: only once the caller checked the proof of the digest.
    pub(crate) async fn complete(
        self,
        spool: &dyn BlobContent,
        key: &ObjectPath,
        size: u64,
    ) -> Result<(), CacheError> {
        self.written.send_replace(Written {
            bytes: size,
            done: true,
        });
        let pending = self.task.await.map_err(|e| CacheError::Io {
            op: "upload",
            subject: format!("object {key}"),
            error: std::io::Error::other(e.to_string()),
        })??;
        finish_upload(pending.upload, spool, key, pending.sent, size).await
    }
}

/// Send every full part of the spool as it is written; hand back the
/// upload when the writer is done, abort it when the writer is gone or a
/// part fails.
async fn send_parts(
    objects: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
    spool: &dyn BlobContent,
    part: u64,
    mut written: watch::Receiver<Written>,
) -> Result<Pending, CacheError> {
    let mut upload = objects
        .put_multipart(key)
        .await
        .map_err(|e| failed("start uploading", key, e))?;
    let mut sent = 0;
    loop {
        let now = *written.borrow_and_update();
        // A full part that is not the last: the last goes at completion.
        if now.bytes.saturating_sub(sent) > part {
            if let Err(e) = send_part(upload.as_mut(), spool, key, sent, part).await {
                let _ = upload.abort().await;
                return Err(e);
            }
            sent += part;
            continue;
        }
        if now.done {
            return Ok(Pending { upload, sent });
        }
        if written.changed().await.is_err() {
            // The writer was dropped: the fill failed or was aborted.
            let _ = upload.abort().await;
            return Err(CacheError::Io {
                op: "upload",
                subject: format!("object {key}"),
                error: std::io::Error::other("the fill was abandoned"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fit_in_ten_thousand_whatever_the_size() {
        assert_eq!(part_size(20 << 20), MIN_PART);
        for size in [1u64 << 30, 100 << 30, 5 << 40] {
            let part = part_size(size);
            assert!(part >= MIN_PART);
            assert!(size.div_ceil(part) <= MAX_PARTS, "{size}: {part}");
        }
    }
}
