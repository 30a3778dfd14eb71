//! Where ACME's state lives under the data directory: one directory per
//! ACME directory URL (`<acme>/<host>_<port>/`), holding the account's
//! credentials and the last certificate with its key. Files are written
//! beside and renamed over, readable by the owner only.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The files of one ACME directory's account.
#[derive(Debug, Clone)]
pub(crate) struct AcmeStore {
    dir: PathBuf,
}

impl AcmeStore {
    /// The store for `directory_url` under `root`.
    pub(crate) fn new(root: &Path, directory_url: &url::Url) -> Self {
        let host = directory_url.host_str().unwrap_or("directory");
        let port = directory_url.port_or_known_default().unwrap_or(443);
        let name: String = format!("{host}_{port}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            dir: root.join(name),
        }
    }

    pub(crate) fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    pub(crate) fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Write `bytes` to `path` atomically, mode 0600.
    pub(crate) fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension("new");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}
