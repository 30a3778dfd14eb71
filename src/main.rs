//! The `berth` binary: parse the command line and hand over to the CLI.
//!
//! Memory comes from jemalloc with its background threads on. Streamed
//! bodies are 256 KiB chunks allocated on one thread and freed on another;
//! glibc's malloc kept what stalled connections had held long after they
//! closed (its per-thread arenas return memory only from their top), and
//! mimalloc returned it only once the threads that owned it allocated
//! again, which idle workers never do. jemalloc's background threads give
//! freed pages back on their own, within seconds (docs/performance.md).
//! Its thread caches are built to keep blocks up to 1 MiB
//! (`.cargo/config.toml`), so TLS records and body chunks are reused by
//! the thread that freed them rather than returned to a shared arena.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    berth::cli::Cli::parse().run()
}
