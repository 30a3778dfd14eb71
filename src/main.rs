//! The `berth` binary: parse the command line and hand over to the CLI.

use clap::Parser;

fn main() -> std::process::ExitCode {
    berth::cli::Cli::parse().run()
}
