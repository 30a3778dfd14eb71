//! Where a fill's bytes come from.
//!
//! A fill reads a [`FillSource`]: today an upstream registry; another store
//! tier (an object store in front of local disk) or another replica can be
//! one too.

use async_trait::async_trait;
use berth_oci::{Digest, RepoName};
use berth_upstream::{Upstream, UpstreamError, Urgency};
use bytes::Bytes;
use futures_util::Stream;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;

/// The body of a download: chunks in order, or why it broke.
pub type DownloadBody = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// A blob download whose answer has arrived.
pub struct Download {
    /// The blob's total size, when the source said.
    pub size: Option<u64>,
    /// The bytes from the offset asked for.
    pub body: DownloadBody,
}

impl Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .finish()
    }
}

/// Something a blob can be filled from.
#[async_trait]
pub trait FillSource: Send + Sync + Debug {
    /// Name for logs and metrics.
    fn name(&self) -> &str;

    /// Start downloading `digest` (of `repo`) from byte `offset`; a
    /// download that `urgency` says nobody waits for yet goes last.
    async fn fetch(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        urgency: &Urgency,
    ) -> Result<Download, UpstreamError>;
}

/// An upstream asked with one client's own credentials (pass-through
/// mode), or with berth's when `client` is `None`.
#[derive(Debug)]
pub struct UpstreamSource {
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) client: Option<Arc<str>>,
}

#[async_trait]
impl FillSource for UpstreamSource {
    fn name(&self) -> &str {
        self.upstream.name()
    }

    async fn fetch(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        urgency: &Urgency,
    ) -> Result<Download, UpstreamError> {
        let client = self.client.as_deref();
        let download = self
            .upstream
            .get_blob(repo, digest, offset, urgency, client)
            .await?;
        let size = download.size;
        let body = futures_util::stream::unfold(download.into_body(), |mut body| async move {
            body.next().await.map(|chunk| (chunk, body))
        });
        Ok(Download {
            size,
            body: Box::pin(body),
        })
    }
}
