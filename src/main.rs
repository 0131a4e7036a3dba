//! The `callbridge` command line: `serve`, `check-config`, `simulate`, `twilio`, `call`, `calls`, `mcp`. Everything
//! else lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use callbridge::config::{Requirement, Settings};
use callbridge::startup::Application;

/// callbridge: put an OpenAI Realtime voice on your Twilio number.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: Twilio webhooks, media streams, the relay to OpenAI.
    Serve,
    /// Print the effective settings (secrets masked) and whether `serve` would start.
    CheckConfig,
    /// Play Twilio against a running callbridge: signed webhook, media stream, real-time audio.
    Simulate(callbridge::simulate::cli::SimulateArgs),
    /// Point your Twilio number at this server, or check where it points.
    Twilio(callbridge::cli_twilio::TwilioArgs),
    /// List and show stored calls.
    Calls(callbridge::cli_calls::CallsArgs),
    /// Place a call from the terminal and follow it to the end.
    Call(callbridge::cli_call::CallArgs),
    /// Serve the MCP tools over stdio, forwarding to a running callbridge.
    Mcp(callbridge::cli_mcp::McpArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve().await,
        Command::CheckConfig => check_config(),
        Command::Twilio(args) => {
            callbridge::telemetry::init(callbridge::config::LogFormat::Text, "warn");
            callbridge::cli_twilio::run(args).await
        }
        Command::Calls(args) => callbridge::cli_calls::run(args),
        Command::Call(args) => {
            callbridge::telemetry::init(callbridge::config::LogFormat::Text, "warn");
            callbridge::cli_call::run(args).await
        }
        Command::Mcp(args) => {
            callbridge::telemetry::init(callbridge::config::LogFormat::Text, "warn");
            callbridge::cli_mcp::run(args).await
        }
        Command::Simulate(args) => {
            callbridge::telemetry::init(callbridge::config::LogFormat::Text, "warn");
            callbridge::simulate::cli::run_cli(args).await
        }
    }
}

async fn serve() -> ExitCode {
    let settings = match Settings::from_process(Requirement::Serve) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("callbridge cannot start:\n{e}");
            return ExitCode::from(2);
        }
    };
    callbridge::telemetry::init(settings.log_format, "info");
    match callbridge::startup::raise_fd_limit() {
        Ok(fds) => tracing::info!(fds, "open file descriptor limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file descriptor limit"),
    }
    let app = match Application::build(settings) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("callbridge cannot start: {e:#}");
            return ExitCode::from(2);
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config() -> ExitCode {
    match Settings::from_process(Requirement::Nothing) {
        Ok(settings) => {
            print!("{}", settings.describe());
            match Settings::from_process(Requirement::Serve) {
                Ok(_) => {
                    println!("\nOK: `callbridge serve` has everything it needs.");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("\n`callbridge serve` would not start:\n{e}");
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            eprintln!("invalid settings:\n{e}");
            ExitCode::from(2)
        }
    }
}
