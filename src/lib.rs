//! berth: a pull-through cache and proxy for Docker/OCI registries.
//!
//! Layers, each using only those below it:
//! 1. `oci`, `config`, `metrics`: pure types, no I/O;
//! 2. `cache`, `upstream`: storage and upstream registries;
//! 3. `pull`: the cache-or-fetch engine;
//! 4. `http`: the registry API;
//! 5. `app`, `cli`, `telemetry`: wiring.
//!
//! See ARCHITECTURE.md for the request path.

pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod oci;
pub mod pull;
pub mod telemetry;
pub mod upstream;

pub use app::App;
pub use config::Config;
