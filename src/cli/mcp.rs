//! `callbridge mcp`: the MCP tools over stdio, forwarding to a running callbridge server's REST API, so an MCP
//! client that starts its servers as processes (Claude Desktop, `claude mcp add ... -- callbridge mcp`) reaches the
//! one long-running server that takes the calls.
//!
//! The server is `CALLBRIDGE_URL` (or `--url`; default `http://127.0.0.1:PORT`), the key `CALLBRIDGE_API_KEY`
//! from the usual settings (`.env`, `callbridge.toml`, environment). stdout carries the MCP protocol and nothing
//! else; logs go to stderr. A missing key does not stop the server: every tool then answers with an error naming
//! `CALLBRIDGE_API_KEY`, which the client shows.
//!
//! `callbridge mcp config [--claude-code | --claude-desktop]` prints the client configuration instead
//! ([`super::mcp_config`]).
//!
//! Exit codes: 0 when the client closed the connection (or the configuration was printed); 1 when the MCP session
//! failed; 2 for invalid settings, an invalid URL, or (for `config`) no `CALLBRIDGE_API_KEY`.

use std::process::ExitCode;

use secrecy::ExposeSecret as _;

use super::api_client::ApiClient;
use super::mcp_config::{McpClient, render};
use super::output::server_url;
use crate::config::{Requirement, Settings};
use crate::mcp::server::McpServer;

/// Exit code: the MCP session failed (the client did not complete the handshake, stdio broke).
const EXIT_SESSION_FAILED: u8 = 1;
/// Exit code: invalid settings or `CALLBRIDGE_URL`.
const EXIT_CONFIGURATION: u8 = 2;

/// Arguments of `callbridge mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// The running callbridge server to forward the tools to [default: http://127.0.0.1:PORT].
    #[arg(long, env = "CALLBRIDGE_URL", value_name = "URL", global = true)]
    pub url: Option<String>,
    /// Print a client configuration instead of serving.
    #[command(subcommand)]
    pub command: Option<McpCommand>,
}

/// Subcommands of `callbridge mcp`.
#[derive(Debug, clap::Subcommand)]
pub enum McpCommand {
    /// Print the exact command (Claude Code) or JSON block (Claude Desktop) that connects the client to this server,
    /// with CALLBRIDGE_API_KEY from your settings. The output holds the key: keep it private.
    Config(McpConfigArgs),
}

/// Arguments of `callbridge mcp config`.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
pub struct McpConfigArgs {
    /// A `claude mcp add --transport http ...` command for Claude Code (the default).
    #[arg(long)]
    pub claude_code: bool,
    /// A `claude_desktop_config.json` block that runs `callbridge mcp` over stdio.
    #[arg(long)]
    pub claude_desktop: bool,
}

/// Prints the configuration of `callbridge mcp config`: exit 0, or 2 when the settings or the key are missing.
fn print_config(args: &McpConfigArgs, url: Option<&str>) -> ExitCode {
    let settings = match Settings::from_process(Requirement::Nothing) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("callbridge mcp config: invalid settings:\n{e}");
            return ExitCode::from(EXIT_CONFIGURATION);
        }
    };
    let server = match server_url(url, settings.port) {
        Ok(url) => url,
        Err(message) => {
            eprintln!("callbridge mcp config: {message}");
            return ExitCode::from(EXIT_CONFIGURATION);
        }
    };
    let client = if args.claude_desktop {
        McpClient::ClaudeDesktop
    } else {
        McpClient::ClaudeCode
    };
    let binary = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "callbridge".to_owned());
    match render(client, &server, settings.api_key.expose_secret(), &binary) {
        Ok(text) => {
            println!("{text}");
            eprintln!("(this holds your CALLBRIDGE_API_KEY: keep it private)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callbridge mcp config: {e}");
            ExitCode::from(EXIT_CONFIGURATION)
        }
    }
}

/// Runs the MCP server on stdin/stdout until the client closes it; see the module docs for the exit codes.
pub async fn run(args: McpArgs) -> ExitCode {
    if let Some(McpCommand::Config(config)) = &args.command {
        return print_config(config, args.url.as_deref());
    }
    let settings = match Settings::from_process(Requirement::Nothing) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("callbridge mcp: invalid settings:\n{e}");
            return ExitCode::from(EXIT_CONFIGURATION);
        }
    };
    let url = match server_url(args.url.as_deref(), settings.port) {
        Ok(url) => url,
        Err(message) => {
            eprintln!("callbridge mcp: {message}");
            return ExitCode::from(EXIT_CONFIGURATION);
        }
    };
    if settings.api_key.expose_secret().is_empty() {
        tracing::warn!(
            "CALLBRIDGE_API_KEY is not set: the server will refuse every tool call until it is"
        );
    }
    tracing::info!(server = %url, "serving the callbridge MCP tools over stdio");
    let server = McpServer::new(ApiClient::new(url, settings.api_key.clone()));
    let running = match rmcp::ServiceExt::serve(server, rmcp::transport::stdio()).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!(error = %e, "the MCP session did not start");
            return ExitCode::from(EXIT_SESSION_FAILED);
        }
    };
    match running.waiting().await {
        Ok(reason) => {
            tracing::info!(?reason, "the MCP client closed the session");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "the MCP session failed");
            ExitCode::from(EXIT_SESSION_FAILED)
        }
    }
}
