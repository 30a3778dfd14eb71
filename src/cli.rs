//! Command-line interface: `serve`, `check-config` and `cache ...` (see
//! `cache_cli.rs`).

use crate::app::{App, shutdown_signal};
use crate::check_config::EXIT_CONFIG;
use crate::telemetry;
use crate::{cache_cli, prefetch};
use berth_config::{Config, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// berth: a pull-through cache for Docker/OCI registries.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The settings most often given on the command line, with their defaults.
const SETTINGS_HELP: &str = "\
Settings from the environment (each is also a key of the config file; all keys: docs/config.md):
  BERTH_LISTEN=ADDR          address to listen on [default: 0.0.0.0:5000]
  BERTH_DATA_DIR=DIR         cache directory [default: berth-data]
  BERTH_DOMAIN=NAME          base domain for Host routing (<prefix>.NAME) [default: none]
  BERTH_URL302=URL           redirect for paths outside the registry API [default: a landing page]
  BERTH_LOG_FORMAT=FORMAT    text or json [default: text]
  BERTH_LOG_LEVEL=LEVEL      error, warn, info, debug, trace [default: info; RUST_LOG wins]
  BERTH_ADMIN_LISTEN=ADDR    a separate listener for /metrics and the admin endpoints [default: none]
  BERTH_ADMIN_TOKEN=TOKEN    bearer token of the admin endpoints [default: none, endpoints off]
  BERTH_UPSTREAM_<NAME>_USERNAME, BERTH_UPSTREAM_<NAME>_PASSWORD
                             credentials of an upstream (NAME: DOCKER_IO, GHCR_IO, ...)
Without a config file berth mirrors Docker Hub (the default), ghcr.io, quay.io, gcr.io, registry.k8s.io,
k8s.gcr.io, public.ecr.aws, mcr.microsoft.com, docker.cloudsmith.io and nvcr.io.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mirror (embedded defaults when no config file is given).
    #[command(after_help = SETTINGS_HELP)]
    Serve {
        /// TOML configuration file.
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print the upstreams it defines
    /// and the settings the file and the environment change.
    #[command(after_help = SETTINGS_HELP)]
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Print every setting, the built-in upstreams in full too.
        #[arg(long)]
        full: bool,
        /// Also try what is outside the file without serving: the S3
        /// bucket of `[storage]` (endpoint, bucket, credentials).
        #[arg(long)]
        probe: bool,
    },
    /// Work on the cache directory.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Warm a running berth: pull images through it as a client would.
    Prefetch {
        /// berth's URL [default: from the `listen` of --config, on 127.0.0.1]
        #[arg(long, env = "BERTH_SERVER")]
        server: Option<String>,
        /// TOML configuration file (for `listen`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Platforms to take from an index, e.g. linux/arm64 (repeatable)
        /// [default: linux/amd64]
        #[arg(long = "platform")]
        platforms: Vec<String>,
        /// A file of image references, one per line (`#` comments).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Image references: nginx, ghcr.io/org/img:tag, quay.io/a/b@sha256:...
        images: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Re-hash every cached blob and report any whose content does not
    /// match its digest (exit status 1 if any).
    Verify {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Move corrupt blobs to `<data_dir>/quarantine/`.
        #[arg(long)]
        quarantine: bool,
    },
    /// Show the bytes on disk by upstream and repository.
    Du {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List cached tags with their size and last use.
    Ls {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Only repositories matching `upstream/repository` (`*` one
        /// segment, `**` any).
        pattern: Option<String>,
    },
    /// Remove index records whose manifests are no longer cached.
    Gc {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Keep a repository's images from eviction (`upstream/repository`,
    /// `*` and `**` allowed); kept in the data directory.
    Pin {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The pattern to pin.
        pattern: String,
    },
    /// Remove the cached tags of the repositories matching a pattern, and
    /// the blobs only they need.
    Purge {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// `upstream/repository`, `*` and `**` allowed.
        pattern: String,
    },
    /// Undo `berth cache pin`.
    Unpin {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The pattern to unpin.
        pattern: String,
    },
}

fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let loaded = match path {
        Some(p) => Config::load(p, &env_lookup),
        None => Config::embedded(&env_lookup),
    };
    loaded.map_err(|e| {
        eprintln!("berth: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

impl Cli {
    /// Run the chosen command.
    pub fn run(self) -> ExitCode {
        // What berth writes (cached layers of private repositories, the
        // index, ACME keys, sockets) is its own alone, whatever umask it
        // was started with.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        match self.command {
            Command::CheckConfig {
                config,
                full,
                probe,
            } => match load(config.as_ref()) {
                Ok(c) => match crate::check_config::run(&c, full) {
                    code if code != ExitCode::SUCCESS || !probe => code,
                    _ => crate::check_config::probe(&c),
                },
                Err(code) => code,
            },
            Command::Cache(command) => {
                let config = match &command {
                    CacheCommand::Verify { config, .. }
                    | CacheCommand::Du { config }
                    | CacheCommand::Ls { config, .. }
                    | CacheCommand::Gc { config }
                    | CacheCommand::Pin { config, .. }
                    | CacheCommand::Purge { config, .. }
                    | CacheCommand::Unpin { config, .. } => config.clone(),
                };
                let config = match load(config.as_ref()) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                match command {
                    CacheCommand::Verify { quarantine, .. } => {
                        cache_cli::verify(&config, quarantine)
                    }
                    CacheCommand::Du { .. } => cache_cli::du(&config),
                    CacheCommand::Ls { pattern, .. } => cache_cli::ls(&config, pattern.as_deref()),
                    CacheCommand::Gc { .. } => cache_cli::gc(&config),
                    CacheCommand::Pin { pattern, .. } => cache_cli::pin(&config, &pattern, true),
                    CacheCommand::Purge { pattern, .. } => cache_cli::purge(&config, &pattern),
                    CacheCommand::Unpin { pattern, .. } => cache_cli::pin(&config, &pattern, false),
                }
            }
            Command::Prefetch {
                server,
                config,
                platforms,
                file,
                images,
            } => {
                let server = match server {
                    Some(s) => s,
                    None => match load(config.as_ref()) {
                        Ok(c) => prefetch::local_url(c.listen, c.tls.is_some()),
                        Err(code) => return code,
                    },
                };
                prefetch::run(&server, &images, file.as_deref(), &platforms)
            }
            Command::Serve { config } => {
                let path = config.clone();
                let config = match load(config.as_ref()) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                let (_log_guard, log_level) = telemetry::init(config.log_format, &config.log_level);
                match serve(&config, path.as_deref(), log_level) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        // Once: a plain line, or a log line where logs are
                        // read by machines.
                        match config.log_format {
                            LogFormat::Json => tracing::error!("{e:#}"),
                            LogFormat::Text => eprintln!("berth: {e:#}"),
                        }
                        // An unusable certificate is a configuration fault.
                        if e.downcast_ref::<berth_tls::TlsError>().is_some()
                            || e.downcast_ref::<berth_access::AccessError>().is_some()
                        {
                            ExitCode::from(EXIT_CONFIG)
                        } else {
                            ExitCode::FAILURE
                        }
                    }
                }
            }
        }
    }
}

/// A mirror holds a socket per client and a file per blob being served:
/// lift the soft open-file limit to the hard one.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

fn serve(
    config: &Config,
    path: Option<&std::path::Path>,
    log_level: telemetry::LogLevel,
) -> anyhow::Result<()> {
    raise_open_file_limit();
    // Blob responses on HTTP/2, and streams from upstream, read on
    // blocking threads (HTTP/1 uses sendfile); allow many at once.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(2048)
        .build()?;
    let result = runtime.block_on(async {
        let mut app = App::build(config).await?;
        if let Some(path) = path {
            app = app.reload_from(path.to_path_buf(), log_level);
        }
        app.run(shutdown_signal()).await
    });
    // Reader threads end once their responses are gone; don't wait forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
