//! Repository links: which repository berth knows to reference which
//! digest. The store is global by digest, so a blob learned from one
//! repository could otherwise be fetched under any name; a link says that
//! upstream listed the digest in a manifest of that repository, or
//! answered for it under that name. Content is served under a repository
//! only through such a link (see `berth_pull`).
//!
//! On disk a link is an empty file, `index/links/<sha256 of key>/<digest>`
//! (paths: see `layout.rs`); in memory a bounded set remembers the links
//! found, so a warm request costs no file system call.

use crate::{CacheError, Layout};
use berth_oci::Digest;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};

/// Links remembered in memory (entries).
const MEMORY_LINKS: u64 = 256 * 1024;

/// A repository of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoKey {
    /// Upstream name.
    pub upstream: String,
    /// Repository, after upstream routing.
    pub repo: String,
}

impl RepoKey {
    /// The key as one string: what its link directory is named by the hash
    /// of.
    pub fn id(&self) -> String {
        format!("{}\n{}", self.upstream, self.repo)
    }

    /// One value standing for the link of this repository to `digest`.
    fn link_id(&self, digest: &Digest) -> Digest {
        Digest::of(format!("{}\n{digest}", self.id()).as_bytes())
    }
}

/// Links on local disk, with the ones seen remembered in memory.
#[derive(Debug)]
pub(crate) struct FsLinks {
    layout: Layout,
    known: Cache<Digest, ()>,
}

impl FsLinks {
    pub(crate) fn new(layout: &Layout) -> Self {
        Self {
            layout: layout.clone(),
            known: Cache::new(MEMORY_LINKS),
        }
    }

    pub(crate) async fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, CacheError> {
        let id = repo.link_id(digest);
        if self.known.contains_key(&id) {
            return Ok(true);
        }
        let path = self.layout.link(repo, digest);
        match tokio::fs::metadata(&path).await {
            Ok(_) => {
                self.known.insert(id, ());
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::io("read", &path, e)),
        }
    }

    pub(crate) async fn link(&self, repo: &RepoKey, digests: &[Digest]) -> Result<(), CacheError> {
        let fresh: Vec<&Digest> = digests
            .iter()
            .filter(|d| !self.known.contains_key(&repo.link_id(d)))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let dir = self.layout.repo_links(repo);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| CacheError::io("create", &dir, e))?;
        for digest in fresh {
            let path = self.layout.link(repo, digest);
            tokio::fs::write(&path, b"")
                .await
                .map_err(|e| CacheError::io("write", &path, e))?;
            self.known.insert(repo.link_id(digest), ());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn links_survive_reopen_and_stay_per_repository() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let a = RepoKey {
            upstream: "lab".into(),
            repo: "private/app".into(),
        };
        let b = RepoKey {
            upstream: "lab".into(),
            repo: "library/small".into(),
        };
        let d = Digest::of(b"layer");
        let links = FsLinks::new(&layout);
        assert!(!links.linked(&a, &d).await.unwrap());
        links.link(&a, &[d]).await.unwrap();
        assert!(links.linked(&a, &d).await.unwrap());
        assert!(!links.linked(&b, &d).await.unwrap());
        let reopened = FsLinks::new(&layout);
        assert!(reopened.linked(&a, &d).await.unwrap());
        assert!(!reopened.linked(&b, &d).await.unwrap());
    }
}
