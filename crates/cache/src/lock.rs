//! The lock that keeps a data directory to one berth process: an exclusive
//! `flock` on `<data_dir>/berth.lock`, taken before anything else in the
//! directory is touched (before `tmp/` is swept) and held for as long as
//! its holder lives. The file names the holder's pid, so that a second
//! process can say who is in the way. The kernel drops the lock when the
//! holder exits, however it exits.
//!
//! Read-only tools (`berth cache verify` without `--quarantine`) do not
//! take it, so they work beside a running server.

use crate::{CacheError, Layout, io_err};
use std::fs::{File, TryLockError};
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;

/// An exclusive hold on a data directory; released on drop.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Lock `root` (creating it if needed) for this process, or fail at once
    /// when another process holds it, naming that process's pid.
    pub fn acquire(layout: &Layout) -> Result<Self, CacheError> {
        let root = layout.root();
        std::fs::create_dir_all(root).map_err(io_err("create", root))?;
        let path = layout.lock_file();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder =
                    holder_pid(&file).map_or_else(|| "unknown".to_owned(), |pid| pid.to_string());
                let message = format!(
                    "{} is in use by another berth process (pid {holder}); stop it, or give this one another data_dir",
                    root.display()
                );
                return Err(CacheError::io(
                    "lock",
                    &path,
                    std::io::Error::new(std::io::ErrorKind::WouldBlock, message),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(CacheError::io("lock", &path, e)),
        }
        // Write first, then cut: a reader never sees an empty file.
        let pid = format!("{}\n", std::process::id());
        file.write_all_at(pid.as_bytes(), 0)
            .and_then(|()| file.set_len(pid.len() as u64))
            .map_err(io_err("write", &path))?;
        Ok(Self { _file: file })
    }
}

/// The pid written by the lock's holder, if readable.
fn holder_pid(file: &File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let first = DataDirLock::acquire(&layout).unwrap();
        let refused = DataDirLock::acquire(&layout).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(first);
        let _again = DataDirLock::acquire(&layout).unwrap();
    }
}
