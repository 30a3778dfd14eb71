//! Where blobs are kept (`[storage]`): the local disk under `data_dir`
//! (the default), or an S3-compatible bucket. The index (tags, listings,
//! links, media types) stays under `data_dir` either way: it is soft
//! state, rebuilt by revalidation.

use crate::Secret;
use crate::checks::{Problems, parse_url};
use crate::file::RawStorage;

/// Where blobs are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StorageSettings {
    /// Files under `data_dir`.
    #[default]
    Fs,
    /// Objects in an S3-compatible bucket.
    S3(Box<S3Settings>),
}

/// An S3-compatible bucket holding the blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// Prefix of every key: empty, or ending in `/`.
    pub prefix: String,
    /// The service's URL, for S3-compatible stores; `None`: AWS.
    pub endpoint: Option<url::Url>,
    /// The region requests are signed for.
    pub region: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// The access key; `None`: the standard `AWS_*` environment variables.
    pub access_key_id: Option<String>,
    /// Its secret.
    pub secret_access_key: Option<Secret>,
    /// Bytes of local disk kept in front of the bucket for hot blobs;
    /// `None`: none, every hit is read from the bucket.
    pub local_tier_size: Option<u64>,
    /// Answer a cached blob's GET with a 307 to a presigned URL.
    pub redirect: bool,
}

/// Whether `name` is a bucket name S3 accepts: 3 to 63 lowercase letters,
/// digits, `.` and `-`, starting and ending with a letter or digit.
fn well_formed_bucket(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last())
}

pub(super) fn build(p: &mut Problems, raw: Option<&RawStorage>) -> StorageSettings {
    let Some(raw) = raw else {
        return StorageSettings::Fs;
    };
    match raw.backend.as_deref().unwrap_or("fs") {
        "fs" => {
            let s3_only = [
                ("bucket", raw.bucket.is_some()),
                ("prefix", raw.prefix.is_some()),
                ("endpoint", raw.endpoint.is_some()),
                ("region", raw.region.is_some()),
                ("path_style", raw.path_style.is_some()),
                ("access_key_id", raw.access_key_id.is_some()),
                ("secret_access_key", raw.secret_access_key.is_some()),
                (
                    "secret_access_key_file",
                    raw.secret_access_key_file.is_some(),
                ),
                ("local_tier_size", raw.local_tier_size.is_some()),
                ("redirect", raw.redirect.is_some()),
            ];
            for (key, _) in s3_only.iter().filter(|(_, set)| *set) {
                p.add(
                    format!("storage.{key}"),
                    "applies only with backend = \"s3\"",
                );
            }
            StorageSettings::Fs
        }
        "s3" => s3(p, raw).map_or(StorageSettings::Fs, |s3| StorageSettings::S3(Box::new(s3))),
        other => {
            p.add(
                "storage.backend",
                format!("{other:?} is not a backend (\"fs\" or \"s3\")"),
            );
            StorageSettings::Fs
        }
    }
}

fn s3(p: &mut Problems, raw: &RawStorage) -> Option<S3Settings> {
    let before = p.0.len();
    let bucket = raw.bucket.clone().unwrap_or_default();
    if raw.bucket.is_none() {
        p.add("storage.bucket", "backend = \"s3\" needs a bucket");
    } else if !well_formed_bucket(&bucket) {
        p.add(
            "storage.bucket",
            format!(
                "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '.' and '-')"
            ),
        );
    }
    let mut prefix = raw.prefix.clone().unwrap_or_default();
    if prefix.starts_with('/') || prefix.contains("//") {
        p.add(
            "storage.prefix",
            format!("{prefix:?} must not start with '/' or hold an empty segment"),
        );
    } else if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let endpoint = raw
        .endpoint
        .as_deref()
        .and_then(|text| parse_url(p, "storage.endpoint", text));
    let secret = match (&raw.secret_access_key, &raw.secret_access_key_file) {
        (Some(_), Some(_)) => {
            p.add(
                "storage.secret_access_key_file",
                "set either secret_access_key or secret_access_key_file, not both",
            );
            None
        }
        (Some(secret), None) => Some(Secret::new(secret.clone())),
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(text) => Some(Secret::new(text.trim().to_owned())),
            Err(e) => {
                p.add(
                    "storage.secret_access_key_file",
                    format!("cannot read {file:?}: {e}"),
                );
                None
            }
        },
        (None, None) => None,
    };
    match (&raw.access_key_id, &secret) {
        (Some(_), None) if p.0.len() == before => p.add(
            "storage.secret_access_key",
            "access_key_id is set, but no secret_access_key or secret_access_key_file",
        ),
        (None, Some(_)) => p.add(
            "storage.access_key_id",
            "a secret access key is set, but no access_key_id",
        ),
        _ => {}
    }
    let local_tier_size = raw
        .local_tier_size
        .as_ref()
        .and_then(|r| crate::cache::size(p, "storage.local_tier_size", r))
        .filter(|size| *size > 0);
    (p.0.len() == before).then(|| S3Settings {
        bucket,
        prefix,
        endpoint,
        region: raw.region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
        path_style: raw.path_style.unwrap_or(false),
        access_key_id: raw.access_key_id.clone(),
        secret_access_key: secret,
        local_tier_size,
        redirect: raw.redirect.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Config;

    fn storage(table: &str) -> Result<StorageSettings, String> {
        Config::from_toml(&format!("[storage]\n{table}"), &|_| None)
            .map(|c| c.storage)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_s3_table_is_read_and_checked_key_by_key() {
        let StorageSettings::S3(s3) = storage(
            "backend = \"s3\"\nbucket = \"berth-cache\"\nprefix = \"prod\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n",
        )
        .unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.prefix, "prod/");
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.path_style);
        assert_eq!(s3.secret_access_key.unwrap().expose(), "SK");
        assert_eq!(s3.local_tier_size, None);
        assert!(!s3.redirect);
        let StorageSettings::S3(tiered) = storage(
            "backend = \"s3\"\nbucket = \"abc\"\nlocal_tier_size = \"2GiB\"\nredirect = true",
        )
        .unwrap() else {
            panic!("not s3")
        };
        assert_eq!(tiered.local_tier_size, Some(2 << 30));
        assert!(tiered.redirect);
        let problems =
            storage("backend = \"s3\"\nbucket = \"abc\"\nlocal_tier_size = \"lots\"").unwrap_err();
        assert!(problems.contains("storage.local_tier_size"), "{problems}");
        let problems = storage("redirect = true").unwrap_err();
        assert!(
            problems.contains("storage.redirect: applies only"),
            "{problems}"
        );
        assert_eq!(storage("").unwrap(), StorageSettings::Fs);

        let problems = storage("backend = \"s4\"").unwrap_err();
        assert!(problems.contains("storage.backend"), "{problems}");
        let problems = storage("backend = \"s3\"").unwrap_err();
        assert!(problems.contains("storage.bucket"), "{problems}");
        let problems = storage("backend = \"s3\"\nbucket = \"No_Such\"").unwrap_err();
        assert!(problems.contains("is not a bucket name"), "{problems}");
        let problems =
            storage("backend = \"s3\"\nbucket = \"abc\"\naccess_key_id = \"AK\"").unwrap_err();
        assert!(problems.contains("storage.secret_access_key"), "{problems}");
        let problems = storage("bucket = \"abc\"").unwrap_err();
        assert!(
            problems.contains("storage.bucket: applies only with backend = \"s3\""),
            "{problems}"
        );
        let problems =
            storage("backend = \"s3\"\nbucket = \"abc\"\nendpoint = \"ftp://x\"").unwrap_err();
        assert!(problems.contains("storage.endpoint"), "{problems}");
    }
}
