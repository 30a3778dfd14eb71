//! Which certificate a handshake gets, by the name the client asked for
//! (SNI): an exact name first, then a `*.` wildcard one label deep, then
//! the default pair. The table is swapped whole on reload, so a handshake
//! sees the old table or the new one, never half of each.

use crate::certs::Served;
use crate::challenges::{ACME_TLS_ALPN, Challenges};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};

/// The certificates served at one time.
#[derive(Debug, Default)]
pub struct CertTable {
    /// Name (lowercase, `*.` wildcards kept) → pair.
    named: Vec<(String, Arc<CertifiedKey>)>,
    /// For names no entry serves, and clients that send none.
    default: Option<Arc<CertifiedKey>>,
    /// (label, expiry) of each pair, for the expiry gauge.
    pub(crate) expiries: Vec<(String, i64)>,
}

/// Whether `pattern` (a name, or `*.` before one) covers `name`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

impl CertTable {
    /// Add a pair serving `names`; with none configured, it serves the
    /// names in its certificate and is the default.
    pub fn add(&mut self, served: &Served, configured: &[String], label: String) {
        if configured.is_empty() && self.default.is_none() {
            self.default = Some(Arc::clone(&served.key));
        }
        let names = if configured.is_empty() {
            &served.names
        } else {
            configured
        };
        for name in names {
            self.named.push((name.clone(), Arc::clone(&served.key)));
        }
        self.expiries.push((label, served.not_after));
    }

    /// Every name a pair serves.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(|(name, _)| name.as_str())
    }

    /// The pair for `sni`.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = sni.map(str::to_ascii_lowercase).and_then(|sni| {
            let exact = self.named.iter().find(|(n, _)| *n == sni);
            exact
                .or_else(|| self.named.iter().find(|(n, _)| name_matches(n, &sni)))
                .map(|(_, key)| Arc::clone(key))
        });
        by_name
            .or_else(|| self.default.clone())
            .or_else(|| self.named.first().map(|(_, key)| Arc::clone(key)))
    }
}

/// The resolver rustls asks during each handshake.
#[derive(Debug, Default)]
pub struct Certificates {
    table: RwLock<Arc<CertTable>>,
    challenges: Challenges,
}

impl Certificates {
    /// Serve `table` from the next handshake on.
    pub fn replace(&self, table: CertTable) {
        let table = Arc::new(table);
        match self.table.write() {
            Ok(mut current) => *current = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }

    /// The ACME challenge answers in force.
    pub fn challenges(&self) -> &Challenges {
        &self.challenges
    }

    /// The table served now.
    pub fn current(&self) -> Arc<CertTable> {
        match self.table.read() {
            Ok(table) => Arc::clone(&table),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // A TLS-ALPN-01 check: only the challenge's certificate.
            return hello.server_name().and_then(|n| self.challenges.alpn(n));
        }
        self.current().pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn a_wildcard_covers_one_label() {
        assert!(name_matches("*.m.example", "docker.m.example"));
        assert!(!name_matches("*.m.example", "m.example"));
        assert!(!name_matches("*.m.example", "a.b.m.example"));
        assert!(name_matches("m.example", "m.example"));
        assert!(!name_matches("m.example", "x.m.example"));
    }
}
