//! Logins checked against an htpasswd file of bcrypt entries
//! (`user:$2y$...`, as `htpasswd -B` writes them). bcrypt is slow by
//! design, so a successful check is remembered for a few minutes, keyed
//! by a keyed hash (a secret drawn at load) of the user, the password and
//! the stored hash: a changed password or file never matches an old
//! entry, and what is kept cannot be checked against guesses. An unknown
//! user costs the same bcrypt as a known one (a dummy hash of the file's
//! cost), so timing does not tell which users exist.

use moka::sync::Cache;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a successful check is remembered.
const REMEMBER: Duration = Duration::from_secs(300);

/// The bcrypt cost of the dummy hash when the file names none.
const DEFAULT_COST: u32 = 10;

/// The users of an htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Cache<[u8; 32], ()>,
    /// Keys the hashes that `verified` holds.
    secret: [u8; 32],
    /// What an unknown user's password is checked against, made on first
    /// use at the cost of the file's first entry.
    dummy: OnceLock<String>,
    cost: u32,
    /// bcrypt runs so far.
    verifications: AtomicU64,
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

/// The cost of a bcrypt hash (`$2y$10$...` → 10).
fn cost_of(hash: &str) -> Option<u32> {
    hash.get(4..6)?.parse().ok()
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
        let mut cost = None;
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
                    format!(
                        "the entry for {user:?} is not bcrypt; write the file with `htpasswd -B` (for example `htpasswd -B -c FILE {user}`)"
                    ),
                ));
            }
            cost = cost.or_else(|| cost_of(hash));
            users.insert(user.to_owned(), hash.to_owned());
        }
        let mut secret = [0; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| wrong(0, format!("no randomness for the login cache: {e}")))?;
        Ok(Self {
            users,
            verified: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(REMEMBER)
                .build(),
            secret,
            dummy: OnceLock::new(),
            cost: cost.unwrap_or(DEFAULT_COST),
            verifications: AtomicU64::new(0),
        })
    }

    /// The cache key of a login: a hash keyed by this file's secret.
    fn key(&self, user: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [
            &self.secret[..],
            user.as_bytes(),
            &[0],
            password.as_bytes(),
            &[0],
        ] {
            h.update(part);
        }
        h.update(hash.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(h.finish().as_ref());
        key
    }

    /// Whether `password` was found to be `user`'s a short while ago, so
    /// checking it costs no bcrypt.
    pub fn remembered(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|hash| self.verified.contains_key(&self.key(user, password, hash)))
    }

    /// Whether `password` is `user`'s. Runs bcrypt unless remembered (for
    /// an unknown user too, against a dummy hash): call it off the async
    /// workers.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            let dummy = self
                .dummy
                .get_or_init(|| bcrypt::hash("not a password", self.cost).unwrap_or_default());
            self.verifications.fetch_add(1, Ordering::Relaxed);
            let _ = bcrypt::verify(password, dummy);
            return false;
        };
        let key = self.key(user, password, hash);
        if self.verified.contains_key(&key) {
            return true;
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            self.verified.insert(key, ());
        }
        ok
    }

    /// How many bcrypt verifications have run.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::Htpasswd;

    #[test]
    fn an_unknown_user_costs_a_bcrypt_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
        let h = Htpasswd::load(&file).unwrap();
        assert!(!h.check("mallory", "guess"));
        assert_eq!(h.verifications(), 1, "the unknown user ran no bcrypt");
        assert!(!h.check("alice", "guess"));
        assert_eq!(h.verifications(), 2);
        assert!(h.check("alice", "s3cret"));
        assert!(h.remembered("alice", "s3cret"));
        assert!(h.check("alice", "s3cret"));
        assert_eq!(h.verifications(), 3, "a remembered login runs no bcrypt");
        assert!(!h.remembered("alice", "guess"));
    }
}
