//! The `callbridge` binary: parses the command line and runs it; the subcommands live in [`callbridge::cli`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    callbridge::cli::run(callbridge::cli::Cli::parse()).await
}
