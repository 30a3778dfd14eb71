//! Reading a certificate chain and its private key from PEM files into
//! what the handshake serves. Every way a pair can be wrong (unreadable,
//! not PEM, no certificate, no key, a key of another certificate, expired
//! or not yet valid) is an error that names the file and says what is
//! wrong with it.

use crate::TlsError;
use berth_config::CertFiles;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A loaded pair, ready to serve.
#[derive(Debug, Clone)]
pub struct Served {
    /// The chain and the signing key.
    pub key: Arc<CertifiedKey>,
    /// The DNS names (`*.` wildcards kept, lowercased) and IP addresses
    /// the leaf certificate is for.
    pub names: Vec<String>,
    /// When the leaf became valid, as Unix time in seconds.
    pub not_before: i64,
    /// When the leaf expires, as Unix time in seconds.
    pub not_after: i64,
}

impl Served {
    /// What the expiry gauge calls it: its first name, or `file`.
    pub fn label(&self, file: &Path) -> String {
        self.names
            .first()
            .cloned()
            .unwrap_or_else(|| file.display().to_string())
    }
}

fn wrong(file: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|e| wrong(file, format!("cannot read it: {e}")))
}

fn date(unix: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(unix.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The chain in `file`, leaf first.
fn chain(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(file)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| wrong(file, format!("is not a PEM file: {e}")))?;
    if chain.is_empty() {
        return Err(wrong(
            file,
            "holds no CERTIFICATE block: a PEM chain, leaf first, is expected",
        ));
    }
    Ok(chain)
}

/// The private key in `file`.
fn private_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => wrong(
            file,
            "holds no private key: a PEM block of PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY (SEC1) is expected",
        ),
        other => wrong(file, format!("is not a PEM key file: {other}")),
    })
}

/// An IP address SAN as text (4 or 16 bytes).
fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// What berth reads of a leaf certificate.
struct Leaf {
    not_before: i64,
    not_after: i64,
    names: Vec<String>,
}

impl Leaf {
    fn read(file: &Path, der: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, leaf) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| wrong(file, format!("its first certificate cannot be read: {e}")))?;
        let validity = leaf.validity();
        let names = match leaf.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        Some(dns.to_ascii_lowercase())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(ip) => ip_text(ip),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            names,
        })
    }
}

/// Load the pair `files` names, checked against `now`.
pub fn load(
    files: &CertFiles,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Served, TlsError> {
    let (cert_file, key_file) = (&files.cert_file, &files.key_file);
    let chain = chain(cert_file)?;
    let leaf = Leaf::read(cert_file, &chain[0])?;
    let key = private_key(key_file)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| wrong(key_file, format!("holds a key that cannot sign: {e}")))?;
    let key = CertifiedKey::new(chain, signing);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        key.keys_match()
    {
        return Err(wrong(
            key_file,
            format!(
                "is not the key of the certificate in {}",
                cert_file.display()
            ),
        ));
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if leaf.not_after <= now {
        return Err(wrong(
            cert_file,
            format!("its certificate expired on {}", date(leaf.not_after)),
        ));
    }
    if leaf.not_before > now {
        return Err(wrong(
            cert_file,
            format!(
                "its certificate is not valid before {}",
                date(leaf.not_before)
            ),
        ));
    }
    Ok(Served {
        key: Arc::new(key),
        names: leaf.names,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    })
}
