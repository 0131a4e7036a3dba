//! `callbridge serve`: loads the settings (they must have everything a call needs), sets up logging, raises the open
//! file descriptor limit and runs the server until it is stopped (see [`crate::startup`]).
//!
//! Exit codes: 0 after a graceful shutdown; 1 the server failed while running; 2 it could not start (a missing or
//! invalid setting, the port taken, the database unusable).

use std::process::ExitCode;

use crate::config::{Requirement, Settings};
use crate::startup::Application;

/// Exit code: the server failed while running.
const EXIT_FAILED: u8 = 1;
/// Exit code: the server could not start.
const EXIT_CANNOT_START: u8 = 2;

/// Runs `callbridge serve`; see the module docs for the exit codes.
pub async fn run() -> ExitCode {
    let settings = match Settings::from_process(Requirement::Serve) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("callbridge cannot start:\n{e}");
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    crate::telemetry::init(settings.log_format, "info");
    match crate::startup::raise_fd_limit() {
        Ok(fds) => tracing::info!(fds, "open file descriptor limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file descriptor limit"),
    }
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("callbridge cannot start: {e:#}");
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
