//! Content digests (`sha256:<64 hex>`) and the incremental verifier used
//! while a blob streams in.

use aws_lc_rs::digest::{Context, SHA256};
use std::fmt;
use std::str::FromStr;

/// A validated content digest: the 32 bytes of a sha256. Only sha256 is
/// supported: it is what every public registry uses, and it keeps cache
/// paths to one fixed shape.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    sha256: [u8; 32],
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("digest {0:?} has no algorithm prefix (expected sha256:<64 hex digits>)")]
    Malformed(String),
    /// An algorithm other than sha256.
    #[error("digest algorithm {0:?} is not supported (only sha256)")]
    UnsupportedAlgorithm(String),
    /// The hex part is not 64 lowercase hex digits.
    #[error("digest {0:?} must be sha256: followed by 64 lowercase hex digits")]
    BadHex(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha256: fixed(aws_lc_rs::digest::digest(&SHA256, bytes)),
        }
    }

    /// The 64 lowercase hex digits, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The 32 bytes of the sha256.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The algorithm name; always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_owned()));
        };
        if algo != "sha256" {
            if algo.is_empty()
                || !algo
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            {
                return Err(DigestError::Malformed(s.to_owned()));
            }
            return Err(DigestError::UnsupportedAlgorithm(algo.to_owned()));
        }
        // Lowercase only: the text form of a digest is unique, so it can be
        // compared and stored as text elsewhere.
        let lowercase = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut sha256 = [0u8; 32];
        if !lowercase || hex::decode_to_slice(hex, &mut sha256).is_err() {
            return Err(DigestError::BadHex(s.to_owned()));
        }
        Ok(Self { sha256 })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the input.
        let _ = hex::encode_to_slice(self.sha256, &mut hex);
        f.write_str("sha256:")?;
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Proof that a stream of bytes hashed to a digest. Only a
/// [`DigestVerifier`] that saw every byte makes one, so a store that asks
/// for it before committing cannot commit unverified content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Verified(Digest);

impl Verified {
    /// The digest the bytes hashed to.
    pub fn digest(&self) -> &Digest {
        &self.0
    }
}

/// The 32 bytes of a finished SHA-256.
fn fixed(done: aws_lc_rs::digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(done.as_ref());
    out
}

/// Hashes bytes as they stream past; [`DigestHasher::finish`] gives their
/// digest.
#[derive(Clone)]
pub struct DigestHasher(Context);

impl DigestHasher {
    /// A hasher that has seen nothing yet.
    pub fn new() -> Self {
        Self(Context::new(&SHA256))
    }

    /// Feed the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest {
            sha256: fixed(self.0.finish()),
        }
    }
}

impl Default for DigestHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestHasher")
    }
}

/// Hashes bytes as they stream past and checks them against an expected
/// digest at the end.
#[derive(Debug, Clone)]
pub struct DigestVerifier {
    hasher: DigestHasher,
    expected: Digest,
}

impl DigestVerifier {
    /// A verifier expecting `expected`.
    pub fn new(expected: Digest) -> Self {
        Self {
            hasher: DigestHasher::new(),
            expected,
        }
    }

    /// Feed the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    /// Finish: the proof when the bytes hashed to the expected digest,
    /// otherwise the digest that was actually computed.
    pub fn finish(self) -> Result<Verified, Digest> {
        let actual = self.hasher.finish();
        if actual == self.expected {
            Ok(Verified(actual))
        } else {
            Err(actual)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_displays_sha256() {
        let d: Digest = HELLO.parse().unwrap();
        assert_eq!(d.to_string(), HELLO);
        assert_eq!(Digest::of(b"hello"), d);
    }

    #[test]
    fn refuses_bad_digests() {
        assert!(matches!(
            "abc".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            "sha256:ABCD".parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
        let upper = HELLO.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
        let short = &HELLO[..HELLO.len() - 2];
        assert!(matches!(
            short.parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
        assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
        assert!("../x:y".parse::<Digest>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in ".{0,80}|sha256:[0-9a-f]{60,68}") {
            if let Ok(d) = s.parse::<Digest>() {
                proptest::prop_assert_eq!(d.to_string(), s);
                proptest::prop_assert_eq!(d.hex().len(), 64);
            }
        }

        #[test]
        fn digests_of_bytes_round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let d = Digest::of(&bytes);
            proptest::prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }
    }

    #[test]
    fn verifier_detects_mismatch() {
        let mut v = DigestVerifier::new(HELLO.parse().unwrap());
        v.update(b"hel");
        v.update(b"lo");
        assert_eq!(v.finish().unwrap().digest(), &Digest::of(b"hello"));
        let mut v = DigestVerifier::new(HELLO.parse().unwrap());
        v.update(b"hellO");
        assert_eq!(v.finish().unwrap_err(), Digest::of(b"hellO"));
    }
}
