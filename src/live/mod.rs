//! OpenAI GPT-Live over its primary WebSocket (`wss://api.openai.com/v1/live/sessions`): client events, server
//! events, the `session.start` builder, the connector (pre-connect, wait for `session.started`) and the
//! [`translate::LiveTranslator`] that maps Live's wire events to and from the vocabulary the conductor speaks (the
//! Realtime events it already handles), so the bridge drives either engine the same way.
//!
//! Follows <https://developers.openai.com/api/docs/guides/voice-websockets?api=live>, the GPT-Live event reference
//! (<https://learn.microsoft.com/azure/foundry/openai/gpt-live-reference>), the delegation guide
//! (<https://developers.openai.com/api/docs/guides/live-delegation>) and the official `openai` Python SDK's
//! `openai.types.live`, the conformance peer of the tests.

pub mod client;
pub mod client_events;
pub mod server_events;
pub mod session;
pub mod translate;
