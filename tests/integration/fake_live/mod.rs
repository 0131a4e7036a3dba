//! A fake OpenAI GPT-Live server (primary WebSocket) for the integration tests.
//!
//! An independent peer: it speaks the wire protocol with `serde_json::Value` only and never uses the crate's types,
//! following the GPT-Live event reference and the official `openai` Python SDK's `openai.types.live` (3.57).
//!
//! Per WebSocket connection (one connection = one Live session):
//! - **Upgrade.** Accepts `GET /v1/live/sessions` (or Azure's `/openai/v1/live/sessions`) with no query and
//!   `Authorization: Bearer ...` or `api-key`; refuses anything else with an HTTP error (404 path, 400 query, 401 key).
//! - **Start.** The first message must be `session.start` with `session.model`; the fake answers `session.started`
//!   with the resolved session (`id`, `expires_at`, `status: "active"`, and what was sent). Anything before it gets an
//!   `error` and the socket closes. Unknown client event types get an `invalid_request_error`.
//! - **Listening.** `session.input_audio.append` audio is decoded (μ-law) in 20 ms frames and judged speech by energy
//!   (the Realtime fake's detector). When the caller starts speaking: the first word of the next scripted caller
//!   transcript as `session.input_transcript.delta`, and, full duplex, the model stops its own output at once if it
//!   was speaking (it yields: whatever it had not sent yet is never sent). After [`SILENCE_MS`] of silence: the rest of
//!   the transcript, one delta per word, then the next scripted turn after [`LiveScript::reply_delay`].
//! - **Speaking.** A turn is `session.output_audio.delta` events of [`LiveScript::delta_ms`] of μ-law each, one every
//!   `delta_ms / speed_up` (faster than real time, as the relay must cope with), with
//!   `session.output_transcript.delta` words spread over them; then, when the turn says so, a backend function call:
//!   `response.event{event: response.output_item.done{item: function_call}}` (Responses delegation); then
//!   `session.usage.updated` with the whole seconds since `session.started`.
//! - **Commands.** `session.commentary.append` → `session.commentary.appended` and the next scripted turn (the
//!   greeting); `session.instructions.append` → `session.instructions.appended`; `response.item.create` and
//!   `response.create` are recorded; `session.close` → `session.closed{reason:"close_requested", usage}` and the
//!   socket closes.
//! - **Mid-call close.** With [`LiveScript::close_after`], the fake closes the socket (code 1011) that long after
//!   `session.started`.
//!
//! Every event in both directions is recorded; [`FakeLive::dump_for_conformance`] writes the client events for
//! `tests/conformance/test_live_events.py`.

mod server;

pub use server::{FakeLive, LiveScript, LiveTurn, SILENCE_MS};
