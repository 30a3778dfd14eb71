//! Several replicas acting as one cache (`[cluster]`): the Redis (or
//! Valkey) they coordinate through, how the others reach this one, the
//! secret that authenticates their requests to each other, and how long a
//! fill's lease lasts without being renewed.

use crate::Secret;
use crate::checks::{Problems, duration, parse_url};
use crate::file::RawCluster;
use std::net::SocketAddr;
use std::time::Duration;

/// The default lease of a fill: renewed while the fill goes on, so that
/// it only ever expires for a replica that died or froze.
const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// A secret shorter than this is refused: it authenticates every request
/// between replicas.
const MIN_SECRET_LEN: usize = 16;

/// How this replica joins the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://host:port/db` or `rediss://` (TLS), without a password.
    pub redis_url: url::Url,
    /// The password Redis asks for, if any, and the file it was read from.
    pub redis_password: Option<(Secret, std::path::PathBuf)>,
    /// With `rediss://`: the CA certificates (PEM) that Redis's certificate
    /// must chain to, and their file; without, the system's roots.
    pub redis_ca: Option<(Vec<u8>, std::path::PathBuf)>,
    /// How the other replicas reach this one.
    pub node_url: url::Url,
    /// Shared by the replicas; authenticates their requests to each other.
    pub secret: Secret,
    /// The file the secret was read from.
    pub secret_file: std::path::PathBuf,
    /// How long a fill's lease lasts unless renewed.
    pub lease: Duration,
}

pub(super) fn build(
    p: &mut Problems,
    raw: Option<&RawCluster>,
    env: &dyn Fn(&str) -> Option<String>,
    listen: SocketAddr,
) -> Option<ClusterSettings> {
    let raw = raw?;
    let before = p.0.len();
    let redis_url = match raw.redis_url.as_deref() {
        None => {
            p.add(
                "cluster.redis_url",
                "[cluster] needs the Redis URL, like \"redis://127.0.0.1:6379/0\"",
            );
            None
        }
        Some(text) => redis_url(p, text),
    };
    let redis_password = raw.redis_password_file.as_deref().and_then(|file| {
        read_secret(p, "cluster.redis_password_file", file).map(|s| (s, file.into()))
    });
    let redis_ca = raw
        .redis_ca_file
        .as_deref()
        .and_then(|file| redis_ca(p, file, redis_url.as_ref()));
    // Set per replica where one file serves them all (a Kubernetes pod's
    // own name).
    let node_url = match env("BERTH_CLUSTER_NODE_URL") {
        Some(text) => parse_url(p, "BERTH_CLUSTER_NODE_URL", &text),
        None => match raw.node_url.as_deref() {
            Some(text) => parse_url(p, "cluster.node_url", text),
            None if listen.ip().is_unspecified() => {
                p.add(
                "cluster.node_url",
                format!("listen is {listen}, which the other replicas cannot dial: set node_url (or BERTH_CLUSTER_NODE_URL) to this replica's own address, like \"http://10.0.0.5:5000\""),
            );
                None
            }
            None if listen.port() == 0 => {
                p.add(
                "cluster.node_url",
                "listen picks its port at start (port 0), so the other replicas cannot know it: set node_url",
            );
                None
            }
            None => url::Url::parse(&format!("http://{listen}")).ok(),
        },
    };
    let secret = match raw.secret_file.as_deref() {
        None => {
            p.add(
                "cluster.secret_file",
                "[cluster] needs a secret shared by the replicas (a file holding at least 16 characters)",
            );
            None
        }
        Some(file) => read_secret(p, "cluster.secret_file", file),
    };
    if let Some(s) = &secret
        && s.expose().len() < MIN_SECRET_LEN
    {
        p.add(
            "cluster.secret_file",
            format!(
                "the secret has {} characters; at least {MIN_SECRET_LEN} are needed",
                s.expose().len()
            ),
        );
    }
    let lease = duration(p, "cluster.lease", raw.lease.as_deref(), DEFAULT_LEASE);
    if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&lease) {
        p.add("cluster.lease", "must be between 1s and 5m");
    }
    if p.0.len() > before {
        return None;
    }
    Some(ClusterSettings {
        redis_url: redis_url?,
        redis_password,
        redis_ca,
        node_url: node_url?,
        secret: secret?,
        secret_file: raw.secret_file.clone()?.into(),
        lease,
    })
}

/// The CA file for a `rediss://` Redis: PEM certificates.
fn redis_ca(
    p: &mut Problems,
    file: &str,
    url: Option<&url::Url>,
) -> Option<(Vec<u8>, std::path::PathBuf)> {
    const KEY: &str = "cluster.redis_ca_file";
    if url.is_some_and(|u| u.scheme() != "rediss") {
        p.add(KEY, "only applies to a rediss:// (TLS) redis_url");
        return None;
    }
    match std::fs::read(file) {
        Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
            Some((pem, file.into()))
        }
        Ok(_) => {
            p.add(KEY, format!("{file:?} holds no PEM certificate"));
            None
        }
        Err(e) => {
            p.add(KEY, format!("cannot read {file:?}: {e}"));
            None
        }
    }
}

/// A Redis URL: `redis://` or `rediss://` (TLS), a host, an optional
/// database number as the path, and no password (it belongs in a file).
fn redis_url(p: &mut Problems, text: &str) -> Option<url::Url> {
    const KEY: &str = "cluster.redis_url";
    let url = match url::Url::parse(text) {
        Ok(url) => url,
        Err(e) => {
            p.add(KEY, format!("not a URL: {e}"));
            return None;
        }
    };
    if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none() {
        p.add(KEY, "must be a redis:// or rediss:// URL with a host");
        return None;
    }
    // The message must not repeat the URL: it may hold a secret.
    if url.password().is_some() {
        p.add(
            KEY,
            "must not carry a password; put it in cluster.redis_password_file",
        );
        return None;
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        p.add(KEY, format!("the path {db:?} is not a database number"));
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        p.add(KEY, "must not carry a query or fragment");
        return None;
    }
    Some(url)
}

fn read_secret(p: &mut Problems, key: &str, file: &str) -> Option<Secret> {
    match std::fs::read_to_string(file) {
        Ok(text) if text.trim().is_empty() => {
            p.add(key, format!("{file:?} is empty"));
            None
        }
        Ok(text) => Some(Secret::new(text.trim().to_owned())),
        Err(e) => {
            p.add(key, format!("cannot read {file:?}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::Config;
    use std::io::Write as _;

    fn cluster(table: &str) -> Result<Option<super::ClusterSettings>, String> {
        Config::from_toml(
            &format!("listen = \"127.0.0.1:5000\"\n[cluster]\n{table}"),
            &|_| None,
        )
        .map(|c| c.cluster)
        .map_err(|e| e.to_string())
    }

    fn secret_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn a_cluster_table_is_read_with_its_defaults() {
        let secret = secret_file("0123456789abcdef0123\n");
        let c = cluster(&format!(
            "redis_url = \"redis://127.0.0.1:6379/2\"\nsecret_file = {:?}",
            secret.path()
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.node_url.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(c.secret.expose(), "0123456789abcdef0123");
        assert_eq!(c.lease, std::time::Duration::from_secs(10));
        assert_eq!(c.redis_password, None);
    }

    #[test]
    fn each_bad_key_is_named() {
        let short = secret_file("short");
        let e = cluster(&format!(
            "redis_url = \"redis://:hunter2@127.0.0.1:6379\"\nsecret_file = {:?}\nlease = \"0s\"",
            short.path()
        ))
        .unwrap_err();
        assert!(
            e.contains("cluster.redis_url") && e.contains("password"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "the password is not repeated: {e}");
        assert!(
            e.contains("cluster.secret_file") && e.contains("at least 16"),
            "{e}"
        );
        assert!(e.contains("cluster.lease"), "{e}");
        let e = cluster("redis_url = \"http://127.0.0.1:6379\"").unwrap_err();
        assert!(e.contains("must be a redis:// or rediss:// URL"), "{e}");
        let e = cluster("redis_url = \"rediss://127.0.0.1:6380\"").unwrap_err();
        assert!(!e.contains("redis_url"), "rediss:// is taken: {e}");
        assert!(e.contains("cluster.secret_file"), "{e}");
        let not_pem = secret_file("not a certificate");
        let e = cluster(&format!(
            "redis_url = \"rediss://127.0.0.1:6380\"\nredis_ca_file = {:?}",
            not_pem.path()
        ))
        .unwrap_err();
        assert!(
            e.contains("cluster.redis_ca_file") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = cluster(&format!(
            "redis_url = \"redis://127.0.0.1:6379\"\nredis_ca_file = {:?}",
            not_pem.path()
        ))
        .unwrap_err();
        assert!(
            e.contains("cluster.redis_ca_file") && e.contains("only applies to a rediss://"),
            "{e}"
        );
        let e = Config::from_toml(
            "listen = \"0.0.0.0:5000\"\n[cluster]\nredis_url = \"redis://r\"\nsecret_file = \"/nonexistent\"",
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cluster.node_url") && e.contains("0.0.0.0:5000"),
            "{e}"
        );
        assert!(e.contains("cannot read \"/nonexistent\""), "{e}");
        let secret = secret_file("0123456789abcdef0123");
        let c = Config::from_toml(
            &format!("listen = \"0.0.0.0:5000\"\n[cluster]\nredis_url = \"redis://r\"\nsecret_file = {:?}", secret.path()),
            &|k| (k == "BERTH_CLUSTER_NODE_URL").then(|| "http://berth-1.berth-peers:5000".to_owned()),
        )
        .unwrap();
        assert_eq!(
            c.cluster.unwrap().node_url.as_str(),
            "http://berth-1.berth-peers:5000/"
        );
    }
}
