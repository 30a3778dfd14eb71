//! `berth cache verify`: re-hash every committed blob and report, or move
//! to `quarantine/`, any file whose content does not match its name.
//! Runs offline against the data directory; a running berth may serve
//! meanwhile (a quarantined blob is simply fetched again on its next use).

use crate::{CacheError, Layout, io_err};
use berth_oci::{Digest, DigestHasher};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a verification pass found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Blobs whose content matched their digest.
    pub ok: u64,
    /// Files that did not: (path, what is wrong).
    pub corrupt: Vec<(PathBuf, String)>,
    /// How many of those were moved to `quarantine/`.
    pub quarantined: u64,
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = DigestHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish().hex());
        }
        hasher.update(&buf[..n]);
    }
}

/// Verify every blob under `root` (a data directory); with `quarantine`,
/// move corrupt files to `root/quarantine/`.
pub fn verify_store(root: &Path, quarantine: bool) -> Result<VerifyReport, CacheError> {
    let layout = Layout::new(root);
    let blobs = layout.blobs();
    let mut report = VerifyReport::default();
    let mut files = Vec::new();
    for shard in std::fs::read_dir(&blobs).map_err(io_err("list", &blobs))? {
        let shard = shard.map_err(io_err("list", &blobs))?.path();
        if !shard.is_dir() {
            files.push(shard);
            continue;
        }
        for entry in std::fs::read_dir(&shard).map_err(io_err("list", &shard))? {
            files.push(entry.map_err(io_err("list", &shard))?.path());
        }
    }
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let problem = match (
            format!("sha256:{name}").parse::<Digest>(),
            layout.blob_digest(&path),
        ) {
            (Err(_), _) => Some("not named by a sha256 digest".to_owned()),
            (Ok(_), None) => Some("stored in the wrong directory".to_owned()),
            (Ok(_), Some(d)) => match hash_file(&path) {
                Ok(actual) if actual == d.hex() => None,
                Ok(actual) => Some(format!("content hashes to sha256:{actual}")),
                Err(e) => Some(format!("cannot be read: {e}")),
            },
        };
        let Some(problem) = problem else {
            report.ok += 1;
            continue;
        };
        if quarantine {
            let dir = layout.quarantine();
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            let dest = dir.join(name);
            std::fs::rename(&path, &dest).map_err(io_err("rename", &dest))?;
            report.quarantined += 1;
        }
        report.corrupt.push((path, problem));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_quarantines_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let good = Digest::of(b"good");
        let bad = Digest::of(b"bad");
        for (d, content) in [(&good, &b"good"[..]), (&bad, &b"tampered"[..])] {
            let path = layout.blob(d);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let report = verify_store(dir.path(), false).unwrap();
        assert_eq!(report.ok, 1);
        assert_eq!(report.corrupt.len(), 1);
        assert!(report.corrupt[0].1.contains(&Digest::of(b"tampered").hex()));
        let report = verify_store(dir.path(), true).unwrap();
        assert_eq!(report.quarantined, 1);
        assert!(layout.quarantine().join(bad.hex()).exists());
        let report = verify_store(dir.path(), false).unwrap();
        assert!(report.corrupt.is_empty());
    }
}
