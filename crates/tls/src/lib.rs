//! HTTPS for berth's listeners: certificates read from PEM files and
//! checked at start (`certs`), chosen per handshake by the name the client
//! asks for (`table`), and reloaded when the files change or on SIGHUP
//! (`watch`); the rustls server configuration that offers HTTP/2 and
//! HTTP/1.1 by ALPN, with session resumption.
//!
//! Uses `berth-config` (what `[tls]` says) and `berth-metrics`.

mod certs;
mod table;
mod watch;

#[cfg(test)]
mod tests;

pub use certs::{Served, load};
pub use table::{CertTable, Certificates, name_matches};
pub use watch::Reloader;

use berth_config::TlsSettings;
use berth_metrics::Metrics;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use std::path::PathBuf;
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
    /// A part of `[tls]` this build cannot serve.
    #[error("{0}")]
    Unsupported(&'static str),
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// The crypto provider berth's TLS uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// HTTPS as configured: the served certificates and the acceptor.
#[derive(Debug)]
pub struct Tls {
    certificates: Arc<Certificates>,
    reloader: Arc<Reloader>,
    config: Arc<ServerConfig>,
}

impl Tls {
    /// Load and check every certificate `settings` names.
    pub fn start(settings: &TlsSettings, metrics: Arc<Metrics>) -> Result<Self, TlsError> {
        if settings.acme.is_some() {
            return Err(TlsError::Unsupported(
                "tls.acme: berth cannot obtain certificates automatically yet; give cert_file and key_file",
            ));
        }
        let provider = provider();
        let certificates = Arc::new(Certificates::default());
        let reloader = Reloader::new(
            settings.certs.clone(),
            Arc::clone(&certificates),
            Arc::clone(&provider),
            metrics,
        );
        reloader.install(reloader.load_all()?);
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as _);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(Self {
            certificates,
            reloader: Arc::new(reloader),
            config: Arc::new(config),
        })
    }

    /// The server side of TLS with these certificates, for a listener.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// Reload the certificate files (SIGHUP).
    pub fn reload(&self, why: &str) -> bool {
        self.reloader.reload(why)
    }

    /// Reload whenever the files change.
    pub fn watch(&self) {
        Arc::clone(&self.reloader).watch();
    }

    /// The certificates served now.
    pub fn certificates(&self) -> Arc<CertTable> {
        self.certificates.current()
    }
}
