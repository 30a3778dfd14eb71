//! The signing half of the token issuer: an ES256 key with a self-signed
//! certificate (the registry's `rootcertbundle`), the libtrust-style `kid`
//! distribution 2.8 looks keys up by, and compact JWS encoding of the claims.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use data_encoding::BASE64URL_NOPAD;
use rcgen::{CertificateParams, KeyPair, PublicKeyData as _};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One `access` entry of a registry token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// An ES256 signing key plus its certificate.
#[derive(Debug)]
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    cert_pem: String,
    rng: SystemRandom,
}

impl Signer {
    pub fn generate(subject: &str) -> Self {
        let key_pair = KeyPair::generate().expect("generate P-256 key");
        let cert = CertificateParams::new(vec![subject.to_owned()])
            .expect("certificate params")
            .self_signed(&key_pair)
            .expect("self-sign certificate");
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_pair.serialize_der())
                .expect("load the signing key");
        Signer {
            key,
            kid: libtrust_kid(&key_pair.subject_public_key_info()),
            cert_pem: cert.pem(),
            rng,
        }
    }

    /// PEM of the self-signed certificate that verifies our tokens.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A signed compact JWS carrying registry token claims.
    pub fn token(
        &self,
        issuer: &str,
        service: &str,
        subject: &str,
        grants: &[Grant],
        ttl: Duration,
    ) -> String {
        let now = unix_now();
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).expect("random jti");
        let access: Vec<_> = grants
            .iter()
            .map(|g| json!({"type": g.kind, "name": g.name, "actions": g.actions}))
            .collect();
        let header = json!({"typ": "JWT", "alg": "ES256", "kid": self.kid});
        // `aud` must be a plain string: distribution 2.8 rejects an array.
        let claims = json!({
            "iss": issuer,
            "sub": subject,
            "aud": service,
            "exp": now + ttl.as_secs(),
            "nbf": now.saturating_sub(10),
            "iat": now,
            "jti": hex::encode(jti),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA sign");
        format!("{signing_input}.{}", BASE64URL_NOPAD.encode(sig.as_ref()))
    }
}

/// libtrust key id: base32 of the first 30 bytes of sha256(SPKI DER), in 12
/// colon-separated groups of 4.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = berth_oci::Digest::of(spki_der);
    let digest = digest.as_bytes();
    let b32 = data_encoding::BASE32.encode(&digest[..30]);
    let b32 = b32.trim_end_matches('=');
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `secs` since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
