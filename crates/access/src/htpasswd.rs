//! Logins checked against an htpasswd file of bcrypt entries
//! (`user:$2y$...`, as `htpasswd -B` writes them). bcrypt is slow by
//! design, so a successful check is remembered for a few minutes, keyed
//! by a hash of the user, the password and the stored hash: a changed
//! password or file never matches an old entry.

use moka::sync::Cache;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// How long a successful check is remembered.
const REMEMBER: Duration = Duration::from_secs(300);

/// The users of an htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Cache<[u8; 32], ()>,
}

/// Why an htpasswd file is refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct HtpasswdError {
    /// The file.
    pub file: String,
    /// The line, from 1 (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl Htpasswd {
    /// Read `path`: every entry must be bcrypt.
    pub fn load(path: &Path) -> Result<Self, HtpasswdError> {
        let wrong = |line: usize, reason: String| HtpasswdError {
            file: path.display().to_string(),
            line,
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| wrong(0, format!("cannot read it: {e}")))?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(wrong(i + 1, "not `user:hash`".to_owned()));
            };
            if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                return Err(wrong(
                    i + 1,
                    format!("the entry for {user:?} is not bcrypt; write it with `htpasswd -B`"),
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Self {
            users,
            verified: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(REMEMBER)
                .build(),
        })
    }

    /// Whether `password` is `user`'s. Runs bcrypt unless remembered:
    /// call it off the async workers.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user)
            .chain_update([0])
            .chain_update(password)
            .chain_update([0])
            .chain_update(hash)
            .finalize()
            .into();
        if self.verified.contains_key(&key) {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            self.verified.insert(key, ());
        }
        ok
    }
}
