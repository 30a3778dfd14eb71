//! berth: a pull-through cache and proxy for Docker/OCI registries.
//!
//! This crate is the wiring on top of the workspace's layers, each of which
//! is a crate that can use only those below it:
//! 1. `berth-oci`, `berth-config`, `berth-metrics`: pure types, no I/O;
//! 2. `berth-cache`, `berth-upstream`, `berth-tls`, `berth-access`: storage,
//!    upstream registries, HTTPS certificates, who may use the mirror;
//! 3. `berth-pull`: the cache-or-fetch engine;
//! 4. `berth-http`: the server loop and the registry API;
//! 5. here: `app` (building everything from the config), `cli` (with
//!    `check_config`, `cache_cli`, the commands on the data directory, and
//!    `prefetch`, which warms a running berth as a client), `control`,
//!    `reload` (the configuration file reloaded while serving) and
//!    `telemetry`.
//!
//! See ARCHITECTURE.md for the request path.

#[macro_use]
mod output;

pub mod app;
mod blob_store;
mod cache_cli;
mod changed;
mod check_config;
pub mod cli;
mod cluster;
mod control;
mod effective;
mod prefetch;
mod reload;
pub mod telemetry;

pub use app::App;
pub use berth_config::Config;
