//! HTTPS for berth's listeners: certificates read from PEM files and
//! checked at start (`certs`), chosen per handshake by the name the client
//! asks for (`table`), and reloaded when the files change or on SIGHUP
//! (`watch`), or ordered and renewed from an ACME directory (`acme`); the
//! rustls server configuration that offers HTTP/2 and
//! HTTP/1.1 by ALPN, with session resumption.
//!
//! Uses `berth-config` (what `[tls]` says) and `berth-metrics`.

mod acme;
mod certs;
mod challenges;
mod table;
mod watch;

#[cfg(test)]
mod tests;

pub use acme::{Acme, backoff, renew_at};
pub use certs::{Served, load};
pub use challenges::{ACME_TLS_ALPN, Challenges};
pub use table::{CertTable, Certificates, name_matches};
pub use watch::Reloader;

use berth_config::{Challenge, TlsSettings};
use berth_metrics::Metrics;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Sessions a listener remembers for resumption by id (TLS 1.2); TLS 1.3
/// resumes with tickets, which need no memory here.
const SESSION_CACHE: usize = 4096;

/// Why HTTPS cannot start or a certificate cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is unusable.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// The crypto provider berth's TLS uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// HTTPS as configured: the served certificates and the server settings.
#[derive(Debug)]
pub struct Tls {
    certificates: Arc<Certificates>,
    /// Certificate files, when they are the source.
    reloader: Option<Arc<Reloader>>,
    /// The ACME manager and the certificate it found stored, when ACME is
    /// the source.
    acme: Option<(Arc<Acme>, Option<Served>)>,
    config: Arc<ServerConfig>,
}

impl Tls {
    /// Load and check every certificate `settings` names; with ACME, the
    /// certificate stored under `acme_root`, if any.
    pub fn start(
        settings: &TlsSettings,
        acme_root: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let certificates = Arc::new(Certificates::default());
        let (reloader, acme) = match &settings.acme {
            None => {
                let reloader = Reloader::new(
                    settings.certs.clone(),
                    Arc::clone(&certificates),
                    Arc::clone(&provider),
                    metrics,
                );
                reloader.install(reloader.load_all()?);
                (Some(Arc::new(reloader)), None)
            }
            Some(acme) => {
                let acme = Acme::new(
                    acme.clone(),
                    acme_root,
                    Arc::clone(&certificates),
                    Arc::clone(&provider),
                    metrics,
                );
                let stored = acme.stored();
                if let Some(served) = &stored {
                    acme.install(served);
                }
                (None, Some((Arc::new(acme), stored)))
            }
        };
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as _);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if settings
            .acme
            .as_ref()
            .is_some_and(|a| a.challenge == Challenge::TlsAlpn01)
        {
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(Self {
            certificates,
            reloader,
            acme,
            config: Arc::new(config),
        })
    }

    /// The server side of TLS with these certificates, for a listener.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// Reload the certificate files (SIGHUP). ACME certificates are
    /// berth's own and need no reload.
    pub fn reload(&self, why: &str) -> bool {
        match &self.reloader {
            Some(reloader) => reloader.reload(why),
            None => {
                tracing::info!(why, "certificates come from ACME: nothing to reload");
                false
            }
        }
    }

    /// Keep the certificates current for as long as the process runs:
    /// watch the files, or order and renew through ACME. Call once the
    /// listeners are up, since ACME's challenges are answered on them.
    pub fn keep_current(&self) {
        if let Some(reloader) = &self.reloader {
            Arc::clone(reloader).watch();
        }
        if let Some((acme, stored)) = &self.acme {
            tokio::spawn(Arc::clone(acme).run(stored.clone()));
        }
    }

    /// The key authorization for an ACME HTTP-01 `token`.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        self.certificates.challenges().http(token)
    }

    /// The certificates served now.
    pub fn certificates(&self) -> Arc<CertTable> {
        self.certificates.current()
    }
}
