//! Logging setup: text or JSON lines on stderr, filtered by `RUST_LOG`,
//! else the configured `log_level` (default `info`), which a configuration
//! reload can change. Lines are written by a background thread, so
//! request handlers never wait on the terminal or a log pipe.

use berth_config::LogFormat;
use std::io::IsTerminal;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, reload};

/// Puts new filter directives in force.
type SetFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Changes the log level of the running process.
pub struct LogLevel {
    set: SetFilter,
    /// `RUST_LOG` was set: it wins over the configuration.
    from_env: bool,
}

impl std::fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevel")
            .field("from_env", &self.from_env)
            .finish_non_exhaustive()
    }
}

impl LogLevel {
    /// Filter with `directives` from now on, unless `RUST_LOG` decides.
    pub fn set(&self, directives: &str) -> Result<(), String> {
        if self.from_env {
            return Err("RUST_LOG is set and decides the log level".to_owned());
        }
        (self.set)(directives)
    }
}

/// What puts new directives in force through `handle`.
fn setter<S: 'static>(handle: reload::Handle<EnvFilter, S>) -> SetFilter {
    Box::new(move |d: &str| {
        let filter = EnvFilter::try_new(d).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// Install the global subscriber once. Keep the returned guard alive until
/// exit: dropping it flushes the remaining lines.
pub fn init(format: LogFormat, level: &str) -> (WorkerGuard, LogLevel) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let ansi = std::io::stderr().is_terminal();
    let set: SetFilter = match format {
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_writer(writer)
                .with_ansi(ansi)
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            setter(handle)
        }
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_writer(writer)
                .with_ansi(ansi)
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            setter(handle)
        }
    };
    (guard, LogLevel { set, from_env })
}
