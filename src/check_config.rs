//! `berth check-config`: the configuration as berth would run it, in a
//! few lines (listeners, data directory, every upstream with its routes
//! and mirrors, HTTPS, access, admin), the warnings, and whether the data
//! directory can really be created and written, which a valid file alone
//! does not prove.

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

/// Print the summary; exit 78 when the data directory is unusable.
pub(crate) fn run(c: &Config) -> ExitCode {
    if let Err(why) = writable(&c.data_dir) {
        eprintln!("berth: data_dir {}: {why}", c.data_dir.display());
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
    outln!(
        "\n# The effective configuration (defaults and environment included; secrets redacted):\n"
    );
    out!("{}", crate::effective::effective_toml(c));
    ExitCode::SUCCESS
}
