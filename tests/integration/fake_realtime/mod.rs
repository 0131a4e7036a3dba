//! A fake OpenAI Realtime server (GA interface) for the integration tests.
//!
//! It owns one thing: playing the OpenAI side of a call, as an independent peer. It speaks the wire protocol with
//! `serde_json::Value` only and never uses the crate's own event types, so a mistake in those types cannot hide
//! itself. It follows the GA event shapes of the official `openai` Python SDK 3.54 (`openai.types.realtime`) and the
//! API reference <https://platform.openai.com/docs/api-reference/realtime-server-events>.
//!
//! What it does, per WebSocket connection (one connection = one Realtime session, several run concurrently):
//! - **Upgrade.** Accepts `GET /v1/realtime?model=M` (or Azure's `/openai/v1/realtime?...`), records the request
//!   line and headers, and refuses with an HTTP error (no socket) when the path is wrong (404), `model` is missing
//!   (400), there is neither `Authorization: Bearer ...` nor `api-key` (401), or an `OpenAI-Beta` header is present
//!   (400: that header selects the beta interface, and this fake speaks GA only).
//! - **Session.** Sends `session.created` with a full GA session; answers `session.update` with `session.updated`
//!   carrying the merged session (objects merge key by key, anything else replaces). `session.type` is required
//!   and beta-only top-level keys (`input_audio_format`, `voice`, `modalities`, `temperature`, ...) are refused with
//!   `unknown_parameter`, as the GA API does.
//! - **Server VAD by energy.** `input_audio_buffer.append` audio is decoded (μ-law → 16-bit PCM) in 20 ms frames; a
//!   frame is speech when its RMS is at least [`SPEECH_RMS_THRESHOLD`]. After [`SPEECH_START_MS`] of consecutive
//!   speech: `input_audio_buffer.speech_started{audio_start_ms, item_id}`, where `audio_start_ms` is the position of
//!   the first speech frame in the session's input stream minus the session's `prefix_padding_ms` (default 300),
//!   as the SDK documents. After `silence_duration_ms` (default 500) of silence: `speech_stopped{audio_end_ms}`
//!   (the stream position when the silence was judged long enough), `input_audio_buffer.committed`,
//!   `conversation.item.added`/`done` (the user item), `conversation.item.input_audio_transcription.completed`
//!   (the next of [`Script::caller_transcripts`], `""` once they run out), then, when `create_response` is on and
//!   no response is active, the next scripted response. The session's `turn_detection` is honoured: `null` turns
//!   VAD off; `create_response` / `interrupt_response` (both default `true`) are obeyed. The VAD's `threshold` is
//!   ignored (energy threshold fixed).
//! - **Responses.** `response.created` at once, then after [`Script::response_delay`] the output: for
//!   [`ScriptedResponse::Speak`], `response.output_item.added`, `conversation.item.added`,
//!   `response.content_part.added`, then `response.output_audio.delta` events of [`Script::delta_ms`] of μ-law tone
//!   each, one every `delta_ms / speed_up`, then `response.output_audio_transcript.delta` (one per word) and `.done`,
//!   `response.output_audio.done`, `response.content_part.done`, `response.output_item.done`,
//!   `conversation.item.done`, `response.done{status:"completed", usage}` and `rate_limits.updated`. For
//!   [`ScriptedResponse::CallTool`], the `function_call` item with `response.function_call_arguments.delta`/`.done`,
//!   then `response.done`. A `response.create` takes the next scripted response, whether or not the tool's
//!   `function_call_output` item was created first (the SDK does not enforce it either; tests assert the order from
//!   [`FakeRealtime::client_events`]). When the script has run out, every new response is a short
//!   [`fallback_response`].
//! - **Errors like the real API** (`error{error{type, code, message, param, event_id}}`, `event_id` being the client
//!   event's): `response.create` during a response → `conversation_already_has_active_response`; `response.cancel`
//!   with none active → `response_cancel_not_active`; a truncate past the audio sent for the item → `invalid_value`
//!   "Audio content of {sent}ms is already shorter than {audio_end_ms}ms"; a truncate of an item without model audio
//!   (a user or tool item, or an assistant item before its first delta) → `unsupported_content_type`; unknown
//!   item → `invalid_value`; unknown event type → `invalid_value` on `type`; malformed JSON → `invalid_json`; bad
//!   base64 → `invalid_value` on `audio`. Messages of the first four are the real API's; the others are close
//!   approximations (the exact text is not published).
//! - **Cancellation.** `response.cancel` stops the deltas at once and ends the response with
//!   `response.output_audio_transcript.done` (the full scripted transcript: the real model generates text ahead of
//!   audio), `response.output_audio.done`, `response.content_part.done`, `response.output_item.done{status:
//!   "incomplete"}`, `conversation.item.done`, `response.done{status:"cancelled", status_details:{type:"cancelled",
//!   reason:"client_cancelled"}}`. A response cancelled before its output started ends with `response.done` only.
//! - **Late deltas.** The real API can have audio already in flight when it processes a cancellation. With
//!   [`Script::late_deltas_after_cancel`] = N > 0, every cancellation of a streaming response (`response.cancel` or
//!   the fake's own VAD interruption) first sends up to N more `response.output_audio.delta` events of the cancelled
//!   response (same `response_id`/`item_id`, [`Script::delta_ms`] each, back to back, never past the response's
//!   scripted audio), then the closing events above. They count in [`FakeRealtime::audio_sent_ms`] and in what a
//!   truncate may keep, since they were produced.
//! - **Barge-in ordering.** With `interrupt_response` on, speech that starts while a response is active makes the
//!   fake cancel it itself, [`Script::interrupt_delay`] after `speech_started` (default zero: the cancellation events
//!   follow `speech_started` in the same burst, reason `turn_detected`). A relay that answers `speech_started` with
//!   `response.cancel` because it has not yet read the `response.done` therefore gets `response_cancel_not_active`,
//!   exactly the race the real API produces; with a non-zero `interrupt_delay` the relay's cancel wins and succeeds.
//! - **Error flood.** With [`Script::error_flood`] = N > 0, N non-fatal `error` events follow the connection's first
//!   `session.updated`, back to back.
//! - **Mid-call close.** With [`Script::close_after`], the socket is closed (code [`Script::close_code`]) that long
//!   after the connection's first `session.update` (every connection: the session limit, in seconds for the
//!   tests; the real API closes at 60 minutes).
//! - **Unreachable.** With [`Script::accept_connections`] = N, upgrades after the N-th accepted connection are
//!   refused with HTTP 503 and a `server_error` body (no socket).
//! - **Close tracking.** The instant each accepted connection ended is recorded, whichever side ended it: a client
//!   close frame (on receipt), the socket's end or error, or the fake's scripted close (just before its close
//!   frame is sent). Read it with [`FakeRealtime::connection_closed_at`] or wait for it with
//!   [`FakeRealtime::wait_for_connection_closed`].
//!
//! Each connection plays the script from its start (its own copy of the responses and transcripts). Every event
//! in both directions is recorded for the tests to assert on; [`FakeRealtime::dump_jsonl`] writes the client events
//! for the Python conformance check (`tests/conformance/test_realtime_events.py`).
//!
//! The code is split by concern: `server` accepts connections, checks upgrades and plays a connection (the socket
//! side); `session` is the Realtime session state machine and the [`Script`] it follows (no socket); `vad` is the
//! energy detection and the μ-law codec; `record` is what the fake observed, shared by the handle and the
//! connections; `test_client` is the Realtime client the fake's own tests use.

mod record;
mod server;
mod session;
#[cfg(test)]
mod test_client;
mod vad;

pub use record::UpgradeRequest;
pub use server::FakeRealtime;
pub use session::{Script, ScriptedResponse, fallback_response};
pub use vad::{
    SPEECH_RMS_THRESHOLD, SPEECH_START_MS, ULAW_BYTES_PER_MS, ULAW_SILENCE, VAD_FRAME_MS,
    frame_rms, linear_to_ulaw, ulaw_to_linear,
};
