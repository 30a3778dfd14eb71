//! Automatic certificates from an ACME directory (instant-acme): the
//! account and the last certificate are kept under the data directory; a
//! certificate is ordered at start when none is stored for the configured
//! names, and renewed once two thirds of its lifetime have passed. Names
//! are proven with HTTP-01 on the plain listener or TLS-ALPN-01 on the
//! HTTPS one. A failed order keeps the certificate in service, logs why,
//! counts in `/metrics`, and is retried with a backoff.

mod store;

use crate::certs::{self, Served};
use crate::challenges::Challenges;
use crate::table::{CertTable, Certificates};
use berth_config::{AcmeSettings, CertFiles, Challenge};
use berth_metrics::Metrics;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::crypto::CryptoProvider;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::AcmeStore;

/// First wait after a failed order; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Longest sleep between looks at the certificate's age.
const LOOK_EVERY: Duration = Duration::from_secs(3600);
/// How long the directory may take to validate and to issue.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Orders and renews the certificate for `[tls.acme]`.
#[derive(Debug)]
pub struct Acme {
    settings: AcmeSettings,
    store: AcmeStore,
    certificates: Arc<Certificates>,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// once two thirds of its lifetime have passed.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) * 2 / 3
}

/// The wait after `failures` failed orders in a row.
pub fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

impl Acme {
    pub(crate) fn new(
        settings: AcmeSettings,
        root: &Path,
        certificates: Arc<Certificates>,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let store = AcmeStore::new(root, &settings.directory_url);
        Self {
            settings,
            store,
            certificates,
            provider,
            metrics,
        }
    }

    /// The stored certificate, if it is still valid and covers every
    /// configured name.
    pub(crate) fn stored(&self) -> Option<Served> {
        let files = CertFiles {
            cert_file: self.store.cert(),
            key_file: self.store.key(),
            names: Vec::new(),
        };
        if !files.cert_file.exists() {
            return None;
        }
        match certs::load(&files, &self.provider, SystemTime::now()) {
            Ok(served)
                if self
                    .settings
                    .domains
                    .iter()
                    .all(|d| served.names.contains(d)) =>
            {
                Some(served)
            }
            Ok(_) => {
                tracing::info!(
                    "the stored ACME certificate does not cover every name in tls.acme.domains: ordering a new one"
                );
                None
            }
            Err(e) => {
                tracing::info!(error = %e, "the stored ACME certificate is not usable: ordering a new one");
                None
            }
        }
    }

    /// Serve `served`.
    pub(crate) fn install(&self, served: &Served) {
        let mut table = CertTable::default();
        table.add(served, &[], served.label(&self.store.cert()));
        self.metrics.tls.set_expiries(&table.expiries);
        self.certificates.replace(table);
    }

    /// Keep a certificate in service for as long as the process runs.
    pub async fn run(self: Arc<Self>, mut current: Option<Served>) {
        let mut failures = 0;
        loop {
            let due = current
                .as_ref()
                .map_or(0, |c| renew_at(c.not_before, c.not_after));
            let wait = due - unix_now();
            if wait > 0 {
                let wait = Duration::from_secs(wait.unsigned_abs()).min(LOOK_EVERY);
                tokio::time::sleep(wait).await;
                continue;
            }
            let source = if current.is_some() { "renew" } else { "issue" };
            match self.order().await {
                Ok(served) => {
                    tracing::info!(
                        names = ?served.names,
                        not_after = served.not_after,
                        "ACME certificate {}",
                        if current.is_some() { "renewed" } else { "issued" }
                    );
                    self.install(&served);
                    self.metrics.tls.load(source, true);
                    current = Some(served);
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    let retry = backoff(failures);
                    self.metrics.tls.load(source, false);
                    tracing::error!(
                        error = %e,
                        retry_in = ?retry,
                        "ACME certificate not {}; {}",
                        if current.is_some() { "renewed" } else { "issued" },
                        if current.is_some() { "the current one stays in service" } else { "HTTPS has no certificate yet" }
                    );
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// The stored account, or a new one (then stored).
    async fn account(&self) -> Result<Account, String> {
        let builder = || match &self.settings.ca_file {
            Some(ca) => Account::builder_with_root(ca)
                .map_err(|e| format!("tls.acme.ca_file {}: {e}", ca.display())),
            None => Account::builder().map_err(|e| format!("cannot set up the ACME client: {e}")),
        };
        let path = self.store.account();
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(credentials) = serde_json::from_slice::<AccountCredentials>(&bytes)
        {
            return builder()?
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("the stored ACME account: {e}"));
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory_url.to_string(),
                None,
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot create an ACME account at {}: {e}",
                    self.settings.directory_url
                )
            })?;
        let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
        self.store
            .write(&path, &json)
            .map_err(|e| format!("cannot keep the ACME account in {}: {e}", path.display()))?;
        tracing::info!(directory = %self.settings.directory_url, "ACME account created");
        Ok(account)
    }

    /// Order, prove, finalize and store a certificate for every name.
    async fn order(&self) -> Result<Served, String> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let kind = match self.settings.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let challenges = self.certificates.challenges();
        let proven = self.prove(&mut order, &kind, challenges).await;
        let result = match proven {
            Ok(()) => self.finish(&mut order).await,
            Err(e) => Err(e),
        };
        challenges.clear();
        result
    }

    async fn prove(
        &self,
        order: &mut instant_acme::Order,
        kind: &ChallengeType,
        challenges: &Challenges,
    ) -> Result<(), String> {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(format!("an authorization is {other:?}")),
            }
            let Identifier::Dns(name) = authorization.identifier().identifier.clone() else {
                return Err("the directory asked about a name that is not DNS".to_owned());
            };
            let mut challenge = authorization
                .challenge(kind.clone())
                .ok_or_else(|| format!("the directory offers no {kind:?} challenge for {name}"))?;
            let key_authorization = challenge.key_authorization();
            match kind {
                ChallengeType::Http01 => challenges.answer_http(
                    challenge.token.clone(),
                    key_authorization.as_str().to_owned(),
                ),
                _ => challenges.answer_alpn(
                    &name,
                    key_authorization.digest().as_ref(),
                    &self.provider,
                )?,
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge for {name}: {e}"))?;
        }
        let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        match order.poll_ready(&retries).await {
            Ok(OrderStatus::Ready) => Ok(()),
            Ok(status) => Err(format!(
                "the order became {status:?}: a name was not proven"
            )),
            Err(e) => Err(format!("validation: {e}")),
        }
    }

    async fn finish(&self, order: &mut instant_acme::Order) -> Result<Served, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = rcgen::CertificateParams::new(self.settings.domains.clone())
            .map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&RetryPolicy::new().timeout(ORDER_TIMEOUT))
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        let (cert, key_file) = (self.store.cert(), self.store.key());
        self.store
            .write(&key_file, key.serialize_pem().as_bytes())
            .and_then(|()| self.store.write(&cert, chain.as_bytes()))
            .map_err(|e| format!("cannot keep the certificate in {}: {e}", cert.display()))?;
        let files = CertFiles {
            cert_file: cert,
            key_file,
            names: Vec::new(),
        };
        certs::load(&files, &self.provider, SystemTime::now()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{backoff, renew_at};
    use std::time::Duration;

    #[test]
    fn renewal_comes_at_two_thirds_and_failures_back_off() {
        assert_eq!(renew_at(0, 90 * 86_400), 60 * 86_400);
        assert_eq!(renew_at(1000, 1030), 1020);
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(4), Duration::from_secs(80));
        assert_eq!(backoff(30), Duration::from_secs(3600));
    }
}
