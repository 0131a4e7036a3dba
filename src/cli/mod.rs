//! The `callbridge` command line: the clap definitions ([`Cli`], [`Command`]) and [`run`], which dispatches each
//! subcommand to its module. `src/main.rs` only parses the arguments and calls [`run`].
//!
//! - [`serve`]: run the server; [`check_config`]: print the effective settings.
//! - [`twilio`]: point `TWILIO_PHONE_NUMBER` at this server, or check where it points.
//! - [`calls`]: list and show the stored call records, read from the database file.
//! - [`call`]: place a call through a running server's REST API and follow it to its end.
//! - [`mcp`]: the MCP tools over stdio, forwarding to a running server.
//! - [`webhooks`]: list a running server's signed webhook deliveries, or send one again.
//! - [`demo`]: a whole call on this machine against a local stand-in for OpenAI ([`crate::demo`]).
//! - `simulate` plays Twilio against a running server; it lives in [`crate::simulate::cli`] beside the simulator.
//! - [`api_client`] is the REST API client that `call` and `mcp` use; [`output`] holds what every subcommand prints
//!   with: the default server URL, the one duration format, and `printable` for text that came from a peer.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;

pub mod api_client;
pub mod call;
pub mod calls;
pub mod check_config;
pub mod demo;
pub mod mcp;
pub mod mcp_config;
pub mod output;
pub mod serve;
pub mod twilio;
pub mod webhooks;

/// callbridge: put an OpenAI Realtime voice on your Twilio number.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The `callbridge` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: Twilio webhooks, media streams, the relay to OpenAI.
    Serve,
    /// Print the effective settings (secrets masked) and whether `serve` would start.
    CheckConfig,
    /// Play Twilio against a running callbridge: signed webhook, media stream, real-time audio.
    Simulate(crate::simulate::cli::SimulateArgs),
    /// Point your Twilio number at this server, or check where it points.
    Twilio(twilio::TwilioArgs),
    /// List and show stored calls.
    Calls(calls::CallsArgs),
    /// Place a call from the terminal and follow it to the end.
    Call(call::CallArgs),
    /// Serve the MCP tools over stdio, forwarding to a running callbridge.
    Mcp(mcp::McpArgs),
    /// Watch a whole call with no account: the server, a local stand-in for OpenAI (not OpenAI) and a simulated
    /// caller who talks over the assistant, all on this machine.
    Demo(demo::DemoArgs),
    /// List the signed webhook deliveries of a running server, or send one again.
    Webhooks(webhooks::WebhooksArgs),
}

/// Runs the parsed command line and returns the process's exit code (each subcommand's module documents its codes).
/// The client subcommands log at `warn` and up, as text on stderr; `serve` sets up its own logging from the settings.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve => serve::run().await,
        Command::CheckConfig => check_config::run(),
        Command::Twilio(args) => {
            crate::telemetry::init(LogFormat::Text, "warn");
            twilio::run(args).await
        }
        Command::Calls(args) => calls::run(args),
        Command::Call(args) => {
            crate::telemetry::init(LogFormat::Text, "warn");
            call::run(args).await
        }
        Command::Mcp(args) => {
            crate::telemetry::init(LogFormat::Text, "warn");
            mcp::run(args).await
        }
        Command::Demo(args) => {
            crate::telemetry::init(LogFormat::Text, "warn");
            demo::run(args).await
        }
        Command::Webhooks(args) => {
            crate::telemetry::init(LogFormat::Text, "warn");
            webhooks::run(args).await
        }
        Command::Simulate(args) => {
            crate::telemetry::init(LogFormat::Text, "warn");
            crate::simulate::cli::run_cli(args).await
        }
    }
}
