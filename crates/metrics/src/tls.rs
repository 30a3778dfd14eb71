//! HTTPS metrics: when each served certificate expires, how certificate
//! loads (start, reload, ACME issue and renewal) went, and handshakes that
//! failed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the certificate expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// The certificate's first name (or its file when it names none).
    pub certificate: String,
}

/// Labels of certificate loads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLoadLabels {
    /// `reload` (files changed or SIGHUP), `issue` or `renew` (ACME).
    pub source: &'static str,
    /// `ok` or `failed`.
    pub outcome: &'static str,
}

/// HTTPS metrics.
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    /// Unix time at which each served certificate expires.
    pub expiry: Family<CertificateLabels, Gauge>,
    /// Certificate loads after start, by source and outcome.
    pub loads: Family<CertLoadLabels, Counter>,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: Counter,
}

impl TlsMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When each served certificate expires, as Unix time in seconds",
            m.expiry.clone(),
        );
        registry.register(
            "tls_certificate_loads",
            "Certificate loads after start: source=reload, issue or renew; outcome=ok or failed (the old certificate stays)",
            m.loads.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.handshake_failures.clone(),
        );
        m
    }

    /// Count one certificate load.
    pub fn load(&self, source: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.loads
            .get_or_create(&CertLoadLabels { source, outcome })
            .inc();
    }

    /// Show the certificates now served: each name's expiry, none other.
    pub fn set_expiries(&self, certificates: &[(String, i64)]) {
        self.expiry.clear();
        for (certificate, not_after) in certificates {
            self.expiry
                .get_or_create(&CertificateLabels {
                    certificate: certificate.clone(),
                })
                .set(*not_after);
        }
    }
}
