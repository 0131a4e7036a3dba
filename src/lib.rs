//! callbridge: a relay between Twilio Media Streams and an OpenAI Realtime speech-to-speech session.
//!
//! Architecture overview (ARCHITECTURE.md in the repository has the layers, the life of a call and of a frame):
//!
//! - [`config`] loads [`config::Settings`]: built-in defaults < `callbridge.toml` < environment (`.env` supported).
//! - [`startup`] builds the actix-web application on a given `TcpListener` (tests bind port 0) and shuts it down
//!   gracefully (drain, goodbye, exit 0).
//! - [`http`] holds the route handlers: `/health`, `/ready`, the Twilio webhooks (`/incoming-call`,
//!   `/outbound-call/{id}`, `/call-status`), the `/media-stream/{token}` upgrade, the `/api` REST API and `/mcp`.
//! - [`twilio`] speaks Twilio: webhook signatures, TwiML, Media Streams messages, the REST client, number set-up.
//! - [`realtime`] speaks the OpenAI Realtime API (GA): event types, the `session.update` builder, the connector.
//! - [`relay`] is the per-call bridge: an I/O loop that moves messages, and the plain types that decide what to send
//!   (the conductor, the playback ledger, goodbye detection).
//! - [`security`] holds the single-use stream tokens.
//! - [`calls`] holds the call model: the record of a call, its SQLite store, the live calls, and the call service
//!   (place, follow, hang up, instruct) behind the REST API and the MCP tools.
//! - [`mcp`] serves the call tools over MCP (Streamable HTTP at `/mcp`, stdio through `callbridge mcp`).
//! - [`simulate`] plays Twilio against a running server: used by `callbridge simulate` and by the integration tests.
//! - [`demo`] runs `callbridge demo`: the server, a local stand-in for the OpenAI Realtime API and a simulated call,
//!   all on loopback.
//! - [`fleet`] is what several instances share through Redis (`CALLBRIDGE_REDIS_URL`): the connection, stream
//!   tokens, the call registry, the fleet-wide cap and budgets, the instance leases.
//! - [`shutdown`] is the server's shutdown: draining, the goodbye token and the call tasks it waits for.
//! - Leaves every layer may use: [`phone`] (the [`phone::E164`] number, parsed once), [`urls`] (public URLs and route
//!   paths), [`awc_worker`] (awc on a thread of its own, for `Send` futures), [`webhooks`] (the signature, the
//!   destination check and the retry schedule of the signed webhooks callbridge sends).
//! - [`cli`] is the command line: one module per subcommand (`serve`, `check-config`, `twilio`, `calls`, `call`,
//!   `mcp`; `simulate` dispatches to [`simulate::cli`]), the client for a running server's `/api`
//!   ([`cli::api_client`], used by `callbridge call` and `callbridge mcp`) and one output module
//!   ([`cli::output`]: the default server URL, the duration format, `printable`). `src/main.rs` only parses and calls
//!   [`cli::run`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod awc_worker;
pub mod calls;
pub mod cli;
pub mod config;
pub mod cost;
pub mod demo;
pub mod fleet;
pub mod http;
pub mod live;
pub mod mcp;
pub mod metrics;
pub mod phone;
pub mod realtime;
pub mod relay;
pub mod security;
pub mod shutdown;
pub mod simulate;
pub mod startup;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod twilio;
pub mod urls;
pub mod webhooks;
