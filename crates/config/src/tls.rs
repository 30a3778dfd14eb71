//! HTTPS (`[tls]`): the certificate files (one pair, or several chosen by
//! the name a client asks for), the plain listener that redirects to
//! HTTPS and answers ACME HTTP-01 challenges, and automatic certificates
//! (`[tls.acme]`). Only the shape is checked here; the files are read,
//! and their content checked, when berth starts.

use crate::checks::{Problems, parse_url};
use crate::file::{RawAcme, RawTls};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Let's Encrypt's production directory, the default `directory_url`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How berth serves HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Certificate files: the first pair with no names is the default,
    /// the others serve the names they list (SNI).
    pub certs: Vec<CertFiles>,
    /// A plain-HTTP listener that answers 308 to `https://` (and ACME
    /// HTTP-01 challenges).
    pub redirect_listen: Option<SocketAddr>,
    /// Automatic certificates, instead of files.
    pub acme: Option<AcmeSettings>,
}

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (RSA, ECDSA, PKCS#8 or SEC1).
    pub key_file: PathBuf,
    /// Names (`*.example.com` allowed) this pair serves; empty: the names
    /// in the certificate, and every name no other pair serves.
    pub names: Vec<String>,
}

/// The ACME challenge berth answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// A token at `/.well-known/acme-challenge/` on the plain listener.
    Http01,
    /// A certificate for ALPN `acme-tls/1` on the HTTPS listener.
    TlsAlpn01,
}

/// Automatic certificates from an ACME directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names the certificate is for.
    pub domains: Vec<String>,
    /// Contact URLs (`mailto:ops@example.com`) for the account.
    pub contact: Vec<String>,
    /// The directory's URL.
    pub directory_url: url::Url,
    /// How the names are proven.
    pub challenge: Challenge,
    /// Trust for a private directory's HTTPS (PEM), besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// Whether `name` is a DNS name, or `*.` before one.
pub fn well_formed_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn names(p: &mut Problems, key: &str, list: &[String]) -> Vec<String> {
    list.iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let lower = name.to_ascii_lowercase();
            if well_formed_name(&lower) {
                Some(lower)
            } else {
                p.add(
                    format!("{key}[{i}]"),
                    format!(
                        "{name:?} is not a DNS name like mirror.example.com or *.mirror.example.com"
                    ),
                );
                None
            }
        })
        .collect()
}

fn acme(p: &mut Problems, raw: &RawAcme, redirect: bool) -> Option<AcmeSettings> {
    let domains = names(
        p,
        "tls.acme.domains",
        raw.domains.as_deref().unwrap_or_default(),
    );
    if raw.domains.as_ref().is_none_or(Vec::is_empty) {
        p.add("tls.acme.domains", "list the names the certificate is for");
    }
    for (i, d) in domains.iter().enumerate() {
        if d.starts_with("*.") {
            p.add(
                format!("tls.acme.domains[{i}]"),
                format!("{d:?}: a wildcard needs the DNS-01 challenge, which berth does not answer; list each name, or give a wildcard certificate with cert_file"),
            );
        }
    }
    let contact = raw
        .contact
        .clone()
        .map(|c| c.into_vec())
        .unwrap_or_default();
    for c in &contact {
        if !c.starts_with("mailto:") {
            p.add("tls.acme.contact", format!("{c:?} is not a mailto: URL"));
        }
    }
    let directory_url = raw.directory_url.as_deref().unwrap_or(LETS_ENCRYPT);
    let directory_url = parse_url(p, "tls.acme.directory_url", directory_url)?;
    if directory_url.scheme() != "https" {
        p.add("tls.acme.directory_url", "must be an https:// URL");
    }
    let challenge = match raw.challenge.as_deref().unwrap_or("tls-alpn-01") {
        "tls-alpn-01" => Challenge::TlsAlpn01,
        "http-01" => {
            if !redirect {
                p.add(
                    "tls.acme.challenge",
                    "http-01 is answered on the plain listener: set tls.redirect_listen (port 80 for a public directory)",
                );
            }
            Challenge::Http01
        }
        other => {
            p.add(
                "tls.acme.challenge",
                format!("{other:?} is neither \"tls-alpn-01\" nor \"http-01\""),
            );
            Challenge::TlsAlpn01
        }
    };
    Some(AcmeSettings {
        domains,
        contact,
        directory_url,
        challenge,
        ca_file: raw.ca_file.as_deref().map(PathBuf::from),
    })
}

pub(super) fn build(
    p: &mut Problems,
    raw: Option<&RawTls>,
    public: SocketAddr,
) -> Option<TlsSettings> {
    let raw = raw?;
    let mut certs = Vec::new();
    match (&raw.cert_file, &raw.key_file) {
        (Some(cert), Some(key)) => certs.push(CertFiles {
            cert_file: cert.into(),
            key_file: key.into(),
            names: Vec::new(),
        }),
        (Some(_), None) => p.add("tls.key_file", "cert_file needs its key_file"),
        (None, Some(_)) => p.add("tls.cert_file", "key_file needs its cert_file"),
        (None, None) => {}
    }
    for (i, c) in raw.certs.iter().enumerate() {
        let key = format!("tls.certs[{i}]");
        let (Some(cert), Some(key_file)) = (&c.cert_file, &c.key_file) else {
            p.add(key, "needs cert_file and key_file");
            continue;
        };
        let listed = names(
            p,
            &format!("{key}.names"),
            c.names.as_deref().unwrap_or_default(),
        );
        if c.names.as_ref().is_none_or(Vec::is_empty) {
            p.add(
                format!("{key}.names"),
                "list the names this certificate serves (the default pair is cert_file/key_file)",
            );
        }
        certs.push(CertFiles {
            cert_file: cert.into(),
            key_file: key_file.into(),
            names: listed,
        });
    }
    let redirect_listen = raw.redirect_listen.as_deref().and_then(|text| {
        match text.parse::<SocketAddr>() {
            Ok(addr) if addr == public && addr.port() != 0 => {
                p.add("tls.redirect_listen", format!("{text:?} is the HTTPS `listen` address; give the plain listener its own port"));
                None
            }
            Ok(addr) => Some(addr),
            Err(e) => {
                p.add(
                    "tls.redirect_listen",
                    format!("{text:?} is not an address like 0.0.0.0:80: {e}"),
                );
                None
            }
        }
    });
    let acme = raw
        .acme
        .as_ref()
        .and_then(|a| acme(p, a, raw.redirect_listen.is_some()));
    if raw.acme.is_some() && !certs.is_empty() {
        p.add(
            "tls.acme",
            "give either certificate files or [tls.acme], not both",
        );
    }
    if raw.acme.is_none() && certs.is_empty() {
        p.add(
            "tls",
            "set cert_file and key_file, [[tls.certs]], or [tls.acme]",
        );
    }
    Some(TlsSettings {
        certs,
        redirect_listen,
        acme,
    })
}
