//! The `berth` binary: parse the command line and hand over to the CLI.
//!
//! Memory comes from mimalloc rather than glibc's malloc: streamed bodies
//! are 256 KiB chunks freed on many threads, and glibc kept what stalled
//! connections had held long after they closed (its per-thread arenas
//! return freed memory to the system only from their top); mimalloc gives
//! freed pages back.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth::cli::Cli::parse().run()
}
