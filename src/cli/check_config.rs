//! `callbridge check-config`: prints the effective settings (secrets masked, see
//! [`crate::config::Settings::describe`]) and whether `callbridge serve` would start with them.
//!
//! A configured model that OpenAI has deprecated gets a `warning:` line (see [`crate::realtime::models`]); it does
//! not change the exit code.
//!
//! Exit codes: 0 `serve` has everything it needs; 2 a setting is invalid, or one `serve` needs is missing (each
//! problem on a line of its own).

use std::process::ExitCode;

use crate::config::{Requirement, Settings};

/// Exit code: invalid settings, or settings `serve` would refuse.
const EXIT_CONFIGURATION: u8 = 2;

/// Today's date in UTC, `YYYY-MM-DD`.
fn today() -> String {
    let date = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Runs `callbridge check-config`: the settings on stdout, invalid settings on stderr; see the module docs for the
/// exit codes.
pub fn run() -> ExitCode {
    match Settings::from_process(Requirement::Nothing) {
        Ok(settings) => {
            print!("{}", settings.describe());
            for warning in settings.model_warnings(&today()) {
                println!("\nwarning: {warning}");
            }
            match Settings::from_process(Requirement::Serve) {
                Ok(_) => {
                    println!("\nOK: `callbridge serve` has everything it needs.");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("\n`callbridge serve` would not start:\n{e}");
                    ExitCode::from(EXIT_CONFIGURATION)
                }
            }
        }
        Err(e) => {
            eprintln!("invalid settings:\n{e}");
            ExitCode::from(EXIT_CONFIGURATION)
        }
    }
}
