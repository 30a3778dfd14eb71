//! The answers to ACME challenges while an order is open: HTTP-01 key
//! authorizations by token (served by the plain listener under
//! `/.well-known/acme-challenge/`), and TLS-ALPN-01 certificates by name
//! (served to handshakes that offer only `acme-tls/1`).

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The ALPN protocol of TLS-ALPN-01 validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Challenge answers in force.
#[derive(Debug, Default)]
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The key authorization for an HTTP-01 `token`.
    pub fn http(&self, token: &str) -> Option<String> {
        let http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        http.get(token).cloned()
    }

    pub(crate) fn answer_http(&self, token: String, key_authorization: String) {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        http.insert(token, key_authorization);
    }

    /// The TLS-ALPN-01 certificate for `name`.
    pub fn alpn(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let alpn = self.alpn.lock().unwrap_or_else(PoisonError::into_inner);
        alpn.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Answer TLS-ALPN-01 for `name` with a certificate carrying the
    /// digest of the key authorization.
    pub(crate) fn answer_alpn(
        &self,
        name: &str,
        digest: &[u8],
        provider: &CryptoProvider,
    ) -> Result<(), String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
        params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| e.to_string())?;
        let certified = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing));
        let mut alpn = self.alpn.lock().unwrap_or_else(PoisonError::into_inner);
        alpn.insert(name.to_ascii_lowercase(), certified);
        Ok(())
    }

    /// Forget every answer: the order is done.
    pub(crate) fn clear(&self) {
        self.http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.alpn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
