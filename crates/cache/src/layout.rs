//! The one place that spells the data directory's layout:
//!
//! ```text
//! <data_dir>/berth.lock                      held (flock) by the serving process
//! <data_dir>/pins                            pins added by `berth cache pin`, one per line
//! <data_dir>/control.sock                    commands to the serving process (`cache purge`)
//! <data_dir>/blobs/sha256/<2 hex>/<64 hex>   committed blobs and manifests
//! <data_dir>/index/tags/<sha256 of key>.json tag answers
//! <data_dir>/index/lists/<sha256 of key>.json tag lists and referrers
//! <data_dir>/index/manifests/<64 hex>        media type of each cached manifest
//! <data_dir>/index/links/<sha256 of repo>/<64 hex>  the repository references the digest
//! <data_dir>/tmp/                            spools and index writes in progress
//! <data_dir>/quarantine/<64 hex>             blobs `cache verify` found corrupt
//! ```
//!
//! The store, the index, the verifier and the tests all ask this module
//! for paths. No client-supplied string becomes a path: blob paths come
//! from a [`Digest`] (32 bytes), tag files from the sha256 of their key.

use crate::{ListingKey, RepoKey, TagKey};
use berth_oci::Digest;
use std::path::{Path, PathBuf};

/// Paths under one data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a berth store lives here (its blob directory exists).
    pub fn is_store(&self) -> bool {
        self.blobs().is_dir()
    }

    /// The pins `berth cache pin` keeps, one pattern per line.
    pub fn pins(&self) -> PathBuf {
        self.root.join("pins")
    }

    /// ACME accounts and certificates, one directory per ACME directory.
    pub fn acme(&self) -> PathBuf {
        self.root.join("acme")
    }

    /// The socket a serving process takes commands on (`cache purge`).
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// The lock file a serving process holds.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("berth.lock")
    }

    /// The directory of committed blobs (`blobs/sha256`).
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where the committed blob `digest` lives.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs().join(&hex[..2]).join(hex)
    }

    /// The digest a file under [`Layout::blobs`] is stored as, if its name
    /// and shard directory are those of a blob path.
    pub fn blob_digest(&self, path: &Path) -> Option<Digest> {
        let name = path.file_name()?.to_str()?;
        let digest: Digest = format!("sha256:{name}").parse().ok()?;
        (self.blob(&digest) == path).then_some(digest)
    }

    /// The root of the local tier in front of a bucket: a store of its
    /// own, laid out as this one.
    pub fn local_tier(&self) -> PathBuf {
        self.root.join("tier")
    }

    /// The last uses of blobs kept in a bucket: one empty file per blob,
    /// its modification time the use.
    pub fn last_uses(&self) -> PathBuf {
        self.root.join("index").join("last-use")
    }

    /// Spools and index writes in progress; emptied at start-up.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Tag answers.
    pub fn tags(&self) -> PathBuf {
        self.root.join("index").join("tags")
    }

    /// The file of one tag answer: named by the sha256 of its key.
    pub fn tag(&self, key: &TagKey) -> PathBuf {
        let id = Digest::of(key.id().as_bytes());
        self.tags().join(format!("{}.json", id.hex()))
    }

    /// Tag lists and referrers.
    pub fn listings(&self) -> PathBuf {
        self.root.join("index").join("lists")
    }

    /// The file of one listing: named by the sha256 of its key.
    pub fn listing(&self, key: &ListingKey) -> PathBuf {
        let id = Digest::of(key.id().as_bytes());
        self.listings().join(format!("{}.json", id.hex()))
    }

    /// Media types of cached manifests.
    pub fn manifest_types(&self) -> PathBuf {
        self.root.join("index").join("manifests")
    }

    /// The file holding the media type of the manifest `digest`.
    pub fn manifest_type(&self, digest: &Digest) -> PathBuf {
        self.manifest_types().join(digest.hex())
    }

    /// Repository links: which repository references which digest.
    pub fn links(&self) -> PathBuf {
        self.root.join("index").join("links")
    }

    /// The links of one repository: named by the sha256 of its key.
    pub fn repo_links(&self, repo: &RepoKey) -> PathBuf {
        let id = Digest::of(repo.id().as_bytes());
        self.links().join(id.hex())
    }

    /// The (empty) file that links `repo` to `digest`.
    pub fn link(&self, repo: &RepoKey, digest: &Digest) -> PathBuf {
        self.repo_links(repo).join(digest.hex())
    }

    /// Where `cache verify --quarantine` moves corrupt blobs.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_round_trip_and_nothing_else_does() {
        let layout = Layout::new("/data");
        let d = Digest::of(b"x");
        let path = layout.blob(&d);
        assert!(path.starts_with("/data/blobs/sha256"));
        assert_eq!(layout.blob_digest(&path), Some(d));
        let misplaced = layout.blobs().join("00").join(d.hex());
        assert_eq!(layout.blob_digest(&misplaced), None);
        assert_eq!(
            layout.blob_digest(Path::new("/data/blobs/sha256/ab/cd")),
            None
        );
    }
}
