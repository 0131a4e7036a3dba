//! `callbridge twilio ...` (in progress).

use std::process::ExitCode;

/// Arguments of `callbridge twilio`.
#[derive(Debug, clap::Args)]
pub struct TwilioArgs {}

/// Runs `callbridge twilio`.
pub async fn run(_args: TwilioArgs) -> ExitCode {
    ExitCode::SUCCESS
}
