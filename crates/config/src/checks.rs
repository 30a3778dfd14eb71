//! The checks every part of validation shares: the list of problems found
//! so far, and the parsers of values that report a bad one by its key.

use crate::ConfigProblem;
use std::time::Duration;

/// Every problem found so far, in the order found.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigProblem>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

pub(super) fn duration(
    p: &mut Problems,
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Duration {
    match value.map(humantime::parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.add(key, format!("not a duration like \"30s\" or \"5m\": {e}"));
            default
        }
    }
}

/// An upstream base URL: http(s), with a host, no credentials, query or
/// fragment.
pub(super) fn parse_url(p: &mut Problems, key: &str, text: &str) -> Option<url::Url> {
    match url::Url::parse(text) {
        Err(e) => {
            p.add(key, format!("not a URL: {e}"));
            None
        }
        Ok(url) if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() => {
            p.add(key, "must be an http:// or https:// URL with a host");
            None
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            p.add(key, "must not carry a query or fragment");
            None
        }
        // The message must not repeat the URL: it holds a secret.
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            p.add(
                key,
                "must not carry credentials (user:password@host); set `username` and `password_file` (or `password`) instead",
            );
            None
        }
        Ok(url) => Some(url),
    }
}
