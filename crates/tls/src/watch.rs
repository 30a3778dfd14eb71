//! Reloading certificate files without a restart: a poll of the files'
//! identity (inode, size, modification time) every second, and SIGHUP
//! through [`Reloader::reload`]. A change is loaded once it has held still
//! for one poll, so a certificate and key written one after the other are
//! read as a pair. A pair that fails to load keeps the old certificates
//! and logs why.

use crate::TlsError;
use crate::certs;
use crate::table::{CertTable, Certificates};
use berth_config::CertFiles;
use berth_metrics::Metrics;
use rustls::crypto::CryptoProvider;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// Loads the configured files into the served table.
#[derive(Debug)]
pub struct Reloader {
    files: Vec<CertFiles>,
    certificates: Arc<Certificates>,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
}

/// What identifies the content of a file without reading it.
type Identity = Vec<Option<(u64, u64, u64, i64, i64)>>;

impl Reloader {
    pub(crate) fn new(
        files: Vec<CertFiles>,
        certificates: Arc<Certificates>,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            files,
            certificates,
            provider,
            metrics,
        }
    }

    /// Every configured pair, loaded and checked.
    pub(crate) fn load_all(&self) -> Result<CertTable, TlsError> {
        let mut table = CertTable::default();
        let now = SystemTime::now();
        for files in &self.files {
            let served = certs::load(files, &self.provider, now)?;
            let label = served.label(&files.cert_file);
            table.add(&served, &files.names, label);
        }
        Ok(table)
    }

    /// Serve `table`, and show its expiries.
    pub(crate) fn install(&self, table: CertTable) {
        self.metrics.tls.set_expiries(&table.expiries);
        self.certificates.replace(table);
    }

    /// Load the files again; on failure the old certificates stay.
    pub fn reload(&self, why: &str) -> bool {
        match self.load_all() {
            Ok(table) => {
                let names: Vec<&str> = table.names().collect();
                tracing::info!(why, names = ?names, "certificates reloaded");
                self.install(table);
                self.metrics.tls.load("reload", true);
                true
            }
            Err(e) => {
                tracing::error!(why, error = %e, "certificates not reloaded; the old ones are still served");
                self.metrics.tls.load("reload", false);
                false
            }
        }
    }

    fn identity(&self) -> Identity {
        self.files
            .iter()
            .flat_map(|f| [&f.cert_file, &f.key_file])
            .map(|path| {
                std::fs::metadata(path)
                    .ok()
                    .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
            })
            .collect()
    }

    /// Poll the files for as long as the process runs.
    pub fn watch(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut loaded = self.identity();
            let mut seen = loaded.clone();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = self.identity();
                if now != loaded && now == seen {
                    self.reload("the certificate files changed");
                    loaded = now.clone();
                }
                seen = now;
            }
        });
    }
}
