//! The OpenAI Realtime API (GA shape): event types, the `session.update` builder and the WebSocket connector.

pub mod client;
pub mod events;
pub mod session;
