//! `berth check-config`: the configuration as berth would run it, in a
//! few lines (listeners, data directory, every upstream with its routes
//! and mirrors, HTTPS, access, admin), the warnings, and whether the data
//! directory can really be created and written, which a valid file alone
//! does not prove. Whatever `serve` loads and checks at start (the
//! htpasswd file, the GeoIP database, the certificate files) is loaded and
//! checked here too, so that "valid" means `serve` will start.

use berth_config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for an invalid configuration (EX_CONFIG).
pub(crate) const EXIT_CONFIG: u8 = 78;

/// Whether `dir` can be created (if missing) and written: tried for real,
/// and whatever was created for the try is removed again.
fn writable(dir: &Path) -> Result<(), String> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = Some(dir);
    while let Some(p) = at {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        at = p.parent();
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot be created: {e}"))?;
    let probe = dir.join(format!(".berth-check-{}", std::process::id()));
    let written = std::fs::write(&probe, b"").map_err(|e| format!("cannot be written: {e}"));
    let _ = std::fs::remove_file(&probe);
    for created in &missing {
        let _ = std::fs::remove_dir(created);
    }
    written
}

/// What `serve` loads at start from files the configuration names: the
/// first reason it would refuse to start.
fn loadable(c: &Config) -> Result<(), String> {
    if let Err(why) = writable(&c.data_dir) {
        return Err(format!("data_dir {}: {why}", c.data_dir.display()));
    }
    berth_access::Access::load(&c.access)
        .map_err(|e| format!("cannot use the access settings: {e}"))?;
    if let Some(tls) = c.tls.as_ref().filter(|t| t.acme.is_none()) {
        let provider = berth_tls::provider();
        for files in &tls.certs {
            berth_tls::load(files, &provider, std::time::SystemTime::now())
                .map_err(|e| format!("cannot serve HTTPS: {e}"))?;
        }
    }
    Ok(())
}

/// The proxy settings in the environment that upstream requests follow.
fn proxy_lines() -> Vec<String> {
    ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"]
        .into_iter()
        .filter_map(|var| {
            let value = std::env::var(var)
                .or_else(|_| std::env::var(var.to_ascii_lowercase()))
                .ok()?;
            Some(format!(
                "  {var} = {} (upstream requests follow it)",
                redact_userinfo(&value)
            ))
        })
        .collect()
}

/// A proxy URL with any password in it replaced.
fn redact_userinfo(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => value.to_owned(),
    }
}

/// `check-config --probe`: try what lies outside the file, as `serve`
/// would use it: the S3 bucket `[storage]` names (one listing), and the
/// Redis of `[cluster]` (one `PING`); exit 78 naming the key when one
/// fails.
pub(crate) fn probe(c: &Config) -> ExitCode {
    let s3 = match &c.storage {
        berth_config::StorageSettings::S3(s3) => Some(s3),
        berth_config::StorageSettings::Fs => None,
    };
    if s3.is_none() && c.cluster.is_none() {
        outln!("probe: nothing outside the file to try (blobs on local disk, no cluster)");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: cannot start the probe: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut failed = false;
    if let Some(s3) = s3 {
        let tried = crate::blob_store::connect(s3)
            .and_then(|objects| runtime.block_on(crate::blob_store::probe(objects.as_ref(), s3)));
        match tried {
            Ok(()) => outln!("probe: bucket {} answers with these credentials", s3.bucket),
            Err(e) => {
                eprintln!("berth: {e:#}");
                failed = true;
            }
        }
    }
    if let Some(cluster) = &c.cluster {
        let metrics = std::sync::Arc::new(berth_metrics::Metrics::new());
        let tried = berth_cluster::Redis::new(cluster, metrics)
            .and_then(|redis| runtime.block_on(redis.ping()));
        match tried {
            Ok(()) => outln!("probe: Redis answers at {}", cluster.redis_url),
            Err(e) => {
                eprintln!(
                    "berth: cluster.redis_url: Redis at {} does not answer: {e}",
                    cluster.redis_url
                );
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

/// Print the summary and the settings (every one with `full`, else what
/// the file and the environment change); exit 78 when `serve` would refuse
/// to start.
pub(crate) fn run(c: &Config, full: bool) -> ExitCode {
    if let Err(why) = loadable(c) {
        eprintln!("berth: {why}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let scheme = if c.tls.is_some() { "https" } else { "http" };
    outln!(
        "configuration is valid; listen {scheme}://{}, data_dir {}",
        c.listen,
        c.data_dir.display()
    );
    for line in &c.seed_mappings {
        outln!("  from the environment: {line}");
    }
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for line in berth_config::ignored_variables(names.iter().map(String::as_str)) {
        outln!("  from the environment: {line}");
    }
    for line in proxy_lines() {
        outln!("{line}");
    }
    if let Some(domain) = &c.domain {
        outln!("  domain {domain} (Host routing: <host_prefix>.{domain})");
    }
    for u in &c.upstreams {
        let default = if u.default { " (default)" } else { "" };
        outln!("  upstream {} -> {}{default}", u.name, u.url);
        if let Some(prefix) = &u.host_prefix {
            outln!("    host prefix {prefix}");
        }
        if !u.aliases.is_empty() {
            outln!("    aliases {}", u.aliases.join(", "));
        }
        for mirror in &u.resilience.mirrors {
            outln!("    mirror {mirror}");
        }
    }
    if let Some(tls) = &c.tls {
        match &tls.acme {
            Some(acme) => outln!(
                "  HTTPS with ACME certificates for {}",
                acme.domains.join(", ")
            ),
            None => outln!("  HTTPS with {} certificate file(s)", tls.certs.len()),
        }
        if let Some(addr) = tls.redirect_listen {
            outln!("  redirect to HTTPS on http://{addr}");
        }
    }
    if let berth_config::StorageSettings::S3(s3) = &c.storage {
        let endpoint = s3
            .endpoint
            .as_ref()
            .map_or("AWS".to_owned(), ToString::to_string);
        outln!(
            "  blobs in S3: bucket {}, prefix {:?}, at {endpoint}",
            s3.bucket,
            s3.prefix
        );
    }
    let access = &c.access;
    if access.auth.htpasswd_file.is_some()
        || !access.rules.is_empty()
        || access.limits.rate.is_some()
    {
        outln!(
            "  access: logins {}, {} rule(s), rate {}",
            if access.auth.htpasswd_file.is_some() {
                "on"
            } else {
                "off"
            },
            access.rules.len(),
            access
                .limits
                .rate
                .map_or("unlimited".to_owned(), |r| format!("{r}/s"))
        );
    }
    if let Some(db) = &access.geoip_file {
        outln!("  regions from the GeoIP database {}", db.display());
    }
    for u in c
        .upstreams
        .iter()
        .filter(|u| u.auth_mode == berth_config::AuthMode::Passthrough)
    {
        outln!(
            "  {}: clients' own credentials (pass-through), push {}",
            u.name,
            if u.push { "on" } else { "off" }
        );
    }
    match (&c.admin.listen, &c.admin.token) {
        (Some(addr), token) => outln!(
            "  admin endpoints and /metrics on {addr}{}",
            if token.is_some() {
                ", behind the token"
            } else {
                ", no token"
            }
        ),
        (None, Some(_)) => outln!("  admin endpoints on the public port, behind the token"),
        (None, None) => outln!("  admin endpoints off"),
    }
    for warning in c.warnings() {
        outln!("WARNING: {warning}");
    }
    if full {
        outln!(
            "\n# The effective configuration (defaults and environment included; secrets redacted):\n"
        );
        out!("{}", crate::effective::effective_toml(c));
    } else {
        outln!(
            "\n# What the file and the environment set (secrets redacted; --full prints every setting):\n"
        );
        out!("{}", crate::changed::changed_toml(c));
    }
    ExitCode::SUCCESS
}
