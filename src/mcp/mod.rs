//! The MCP server: callbridge's calls as Model Context Protocol tools, one resource per call transcript, and a
//! prompt, for agents in Claude Code, Claude Desktop or any MCP client.
//!
//! - [`server`] holds [`server::McpServer`], generic over a [`crate::calls::backend::CallBackend`]: the tools
//!   `place_call`, `get_call`, `list_calls`, `hang_up`, `instruct_call`; the resources
//!   `callbridge://calls/{id}/transcript`; the prompt `make-restaurant-reservation`.
//! - [`args`] holds the tools' and the prompt's arguments; their doc comments are the JSON Schema descriptions the
//!   model reads.
//! - [`transcript`] renders a call as the plain-text transcript resource and parses its URI.
//! - [`crate::http::mcp`] serves it as Streamable HTTP at `/mcp` on the running server (rmcp-actix-web), behind the bearer key
//!   and a `Host` allowlist; `callbridge mcp` ([`crate::cli::mcp`]) serves it over stdio, forwarding to a running
//!   server's REST API.
//!
//! Follows the MCP specification (<https://modelcontextprotocol.io/specification>) through the official Rust SDK,
//! `rmcp`.

pub mod args;
pub mod prompt;
pub mod server;
pub mod transcript;
