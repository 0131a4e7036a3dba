//! The OpenAI Realtime API (GA shape): server events, client events, token usage, the `session.update` builder and
//! the WebSocket connector.

pub mod client;
pub mod client_events;
pub mod mcp_tools;
pub mod models;
pub mod rebind;
pub mod server_events;
pub mod session;
pub mod truncation;
pub mod usage;
