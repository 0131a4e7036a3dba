//! callbridge: a relay between Twilio Media Streams and an OpenAI Realtime speech-to-speech session.
//!
//! Architecture overview (see `DESIGN.md` in the shared docs for the full call flow):
//!
//! - [`config`] loads [`config::Settings`]: built-in defaults < `callbridge.toml` < environment (`.env` supported).
//! - [`startup`] builds the actix-web application on a given `TcpListener` (tests bind port 0).
//! - [`http`] holds the route handlers: `/health`, the `/incoming-call` voice webhook, the `/media-stream/{token}`
//!   WebSocket upgrade.
//! - [`twilio`] speaks Twilio: webhook signatures, TwiML, Media Streams messages, the REST client.
//! - [`realtime`] speaks the OpenAI Realtime API (GA): event types, the `session.update` builder, the connector.
//! - [`relay`] is the per-call bridge: an I/O loop that moves messages, and the plain types that decide what to send
//!   (the playback ledger, barge-in, goodbye detection).
//! - [`security`] holds the single-use stream tokens.
//! - [`calls`] holds the call record (transcript, end reason, token usage).
//! - [`simulate`] plays Twilio against a running server: used by `callbridge simulate` and by the integration tests.

#![warn(missing_docs)]

pub mod api_client;
pub mod calls;
pub mod cli_call;
pub mod cli_calls;
pub mod cli_mcp;
pub mod cli_twilio;
pub mod config;
pub mod http;
pub mod mcp;
pub mod realtime;
pub mod relay;
pub mod security;
pub mod simulate;
pub mod startup;
pub mod telemetry;
pub mod twilio;
