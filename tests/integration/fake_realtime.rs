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
//!   after the connection's first `session.update`.
//! - **Close tracking.** The instant each accepted connection ended is recorded, whichever side ended it: a client
//!   close frame (on receipt), the socket's end or error, or the fake's scripted close (just before its close
//!   frame is sent). Read it with [`FakeRealtime::connection_closed_at`] or wait for it with
//!   [`FakeRealtime::wait_for_connection_closed`].
//!
//! Each connection plays the script from its start (its own copy of the responses and transcripts). Every event
//! in both directions is recorded for the tests to assert on; [`FakeRealtime::dump_jsonl`] writes the client events
//! for the Python conformance check (`tests/conformance/test_realtime_events.py`).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A 20 ms frame is speech when the RMS of its decoded 16-bit PCM samples is at least this (about -42 dBFS).
/// The espeak-ng fixtures' voiced frames sit well above 1000; μ-law silence (`0xFF`) decodes to exactly 0.
pub const SPEECH_RMS_THRESHOLD: f64 = 250.0;
/// Consecutive speech needed before `input_audio_buffer.speech_started` is emitted, in ms.
pub const SPEECH_START_MS: u64 = 60;
/// Length of one VAD frame, in ms (Twilio's media frame: 160 bytes of 8 kHz μ-law).
pub const VAD_FRAME_MS: u64 = 20;
/// μ-law bytes per ms of 8 kHz mono audio.
pub const ULAW_BYTES_PER_MS: u64 = 8;
/// The μ-law byte of digital silence (decodes to 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// Default `silence_duration_ms` of server VAD (SDK: "Defaults to 500ms").
const DEFAULT_SILENCE_DURATION_MS: u64 = 500;
/// Default `prefix_padding_ms` of server VAD (SDK: "Defaults to 300ms").
const DEFAULT_PREFIX_PADDING_MS: u64 = 300;
/// Top-level `session` keys the GA `session.update` accepts (`RealtimeSessionCreateRequest` in the SDK).
const GA_SESSION_KEYS: &[&str] = &[
    "type",
    "model",
    "output_modalities",
    "instructions",
    "audio",
    "include",
    "tracing",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "truncation",
    "prompt",
    "reasoning",
    "parallel_tool_calls",
];
/// Client event types of the GA API (`RealtimeClientEvent` in the SDK), in the order the error message lists them.
const CLIENT_EVENT_TYPES: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
];

/// What the fake says and when: shared by every connection, each of which plays it from the start.
///
/// Build it with struct update syntax over [`Script::default`]:
/// `Script { responses: vec![...], ..Script::default() }`.
#[derive(Debug, Clone)]
pub struct Script {
    /// The responses, in order; each VAD turn end (with `create_response`) or `response.create` takes the next.
    pub responses: Vec<ScriptedResponse>,
    /// Delay between `response.created` and the response's first output event (the model's time to first audio).
    pub response_delay: Duration,
    /// Audio carried by each `response.output_audio.delta`, in ms (the last delta of a response may be shorter).
    pub delta_ms: u64,
    /// Deltas are sent this many times faster than real time: one every `delta_ms / speed_up`. Must be > 0;
    /// `f64::INFINITY` sends them back to back.
    pub speed_up: f64,
    /// Transcript emitted for each caller turn, in order, in
    /// `conversation.item.input_audio_transcription.completed`; `""` once they run out.
    pub caller_transcripts: Vec<String>,
    /// When set, the fake closes the socket this long after the connection's first `session.update`.
    pub close_after: Option<Duration>,
    /// WebSocket close code used for [`Script::close_after`] (default 1011, internal error).
    pub close_code: u16,
    /// With server VAD's `interrupt_response`, how long after `speech_started` the fake cancels the active response
    /// itself (reason `turn_detected`). Zero (the default) cancels in the same burst as `speech_started`.
    pub interrupt_delay: Duration,
    /// Audio deltas still "in flight" when a streaming response is cancelled (by `response.cancel` or by the
    /// fake's VAD interruption): that many more `response.output_audio.delta` events of the cancelled response
    /// (same ids, [`Script::delta_ms`] each, back to back) are sent before the cancellation's closing events,
    /// fewer when the response's scripted audio runs out first. They count as sent audio for the item. Default 0:
    /// the deltas stop at once.
    pub late_deltas_after_cancel: u32,
    /// After answering the first `session.update`, the fake stops reading the socket (a peer that is up but takes
    /// nothing: a half-open connection) and shrinks its receive buffer, so whatever the client sends backs up.
    pub stop_reading_after_session_update: bool,
    /// A flood: right after answering a connection's first `session.update`, the fake sends this many non-fatal
    /// `error` events back to back (`invalid_request_error` / `conversation_already_has_active_response`, the
    /// real API's text), then plays the session as usual. Default 0.
    pub error_flood: u32,
}

impl Default for Script {
    /// No scripted responses, 200 ms to first audio, 100 ms deltas sent 10× faster than real time, no caller
    /// transcripts, no mid-call close, immediate VAD interruption, no late deltas after a cancellation, no error
    /// flood.
    fn default() -> Self {
        Self {
            responses: Vec::new(),
            response_delay: Duration::from_millis(200),
            delta_ms: 100,
            speed_up: 10.0,
            caller_transcripts: Vec::new(),
            close_after: None,
            close_code: 1011,
            interrupt_delay: Duration::ZERO,
            late_deltas_after_cancel: 0,
            stop_reading_after_session_update: false,
            error_flood: 0,
        }
    }
}

/// One model response of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptedResponse {
    /// An assistant audio message: `audio_ms` of μ-law tone and this transcript.
    Speak {
        /// Total audio of the response, in ms (8 μ-law bytes per ms).
        audio_ms: u64,
        /// What `response.output_audio_transcript.done` carries.
        transcript: String,
    },
    /// A function call: a `function_call` output item with this name and these arguments.
    CallTool {
        /// The function's name, e.g. `end_call`.
        name: String,
        /// The arguments as JSON text, e.g. `{}`.
        arguments: String,
    },
}

impl ScriptedResponse {
    /// Shorthand for [`ScriptedResponse::Speak`].
    pub fn speak(audio_ms: u64, transcript: &str) -> Self {
        Self::Speak {
            audio_ms,
            transcript: transcript.to_owned(),
        }
    }

    /// Shorthand for [`ScriptedResponse::CallTool`].
    pub fn call_tool(name: &str, arguments: &str) -> Self {
        Self::CallTool {
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        }
    }
}

/// The response the fake gives once its script has run out: half a second of audio saying "Okay.".
pub fn fallback_response() -> ScriptedResponse {
    ScriptedResponse::speak(500, "Okay.")
}

/// A running fake Realtime server on `127.0.0.1:<ephemeral port>`. Dropping it stops the server and closes every
/// connection.
pub struct FakeRealtime {
    /// Where it listens.
    addr: SocketAddr,
    /// Script, records and the change notifier, shared with the connection tasks.
    shared: Arc<Shared>,
    /// The accept loop; it owns the connection tasks, so aborting it ends them all.
    accept_task: JoinHandle<()>,
}

/// One WebSocket upgrade request the fake received (accepted or refused).
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// Path and query as requested, e.g. `/v1/realtime?model=gpt-realtime-2.1`.
    pub path_and_query: String,
    /// Headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Whether the fake accepted the upgrade.
    pub accepted: bool,
}

impl FakeRealtime {
    /// Binds `127.0.0.1:0` and starts serving `script` to every connection.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound (a broken test environment).
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the fake");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            script,
            record: Mutex::new(Record::default()),
            changed: Notify::new(),
            next_id: AtomicU64::new(1),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self {
            addr,
            shared,
            accept_task,
        }
    }

    /// The URL to give the relay: `ws://127.0.0.1:PORT/v1/realtime` (the relay appends `?model=...`).
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// The socket address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every client event received, on all connections, in arrival order. A text frame that is not a JSON object
    /// is recorded as a JSON string holding the raw text.
    pub fn client_events(&self) -> Vec<Value> {
        self.shared
            .record()
            .client_events
            .iter()
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The client events of one connection (0-based, in accept order).
    pub fn client_events_of_connection(&self, connection: usize) -> Vec<Value> {
        let record = self.shared.record();
        record
            .client_events
            .iter()
            .filter(|(c, _)| *c == connection)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The client events whose `type` is `event_type`, in arrival order.
    pub fn events_of_type(&self, event_type: &str) -> Vec<Value> {
        filter_type(
            self.shared.record().client_events.iter().map(|(_, e)| e),
            event_type,
        )
    }

    /// Every event the fake sent, on all connections, in order.
    pub fn server_events(&self) -> Vec<Value> {
        self.shared
            .record()
            .server_events
            .iter()
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The events the fake sent whose `type` is `event_type`, in order.
    pub fn server_events_of_type(&self, event_type: &str) -> Vec<Value> {
        filter_type(
            self.shared.record().server_events.iter().map(|(_, e)| e),
            event_type,
        )
    }

    /// Waits until a client event of type `event_type` has been received (now or earlier) and returns the first
    /// one; `None` after `timeout`.
    pub async fn wait_for_event(&self, event_type: &str, timeout: Duration) -> Option<Value> {
        self.wait_for_events(event_type, 1, timeout)
            .await
            .and_then(|events| events.into_iter().next())
    }

    /// Waits until at least `count` client events of type `event_type` have been received and returns them all;
    /// `None` after `timeout`.
    pub async fn wait_for_events(
        &self,
        event_type: &str,
        count: usize,
        timeout: Duration,
    ) -> Option<Vec<Value>> {
        self.wait_until(timeout, || {
            let events = self.events_of_type(event_type);
            (events.len() >= count).then_some(events)
        })
        .await
    }

    /// Waits until the fake has sent an event of type `event_type` and returns the first one; `None` after
    /// `timeout`.
    pub async fn wait_for_server_event(
        &self,
        event_type: &str,
        timeout: Duration,
    ) -> Option<Value> {
        self.wait_until(timeout, || {
            self.server_events_of_type(event_type).into_iter().next()
        })
        .await
    }

    /// How many WebSocket upgrades the fake accepted.
    pub fn connections(&self) -> usize {
        self.shared.record().connections
    }

    /// When accepted connection number `connection` (0-based, in accept order) ended, whichever side ended it: a
    /// client close frame (when it arrived), the socket's end or error, or the fake's scripted close (just before
    /// its close frame was sent). `None` while it is open, or when there is no such connection.
    pub fn connection_closed_at(&self, connection: usize) -> Option<std::time::Instant> {
        self.shared.record().closed_at.get(&connection).copied()
    }

    /// Waits until accepted connection number `connection` (0-based, in accept order) has ended (now or earlier)
    /// and returns when, as [`FakeRealtime::connection_closed_at`]; `None` after `timeout`.
    pub async fn wait_for_connection_closed(
        &self,
        connection: usize,
        timeout: Duration,
    ) -> Option<std::time::Instant> {
        self.wait_until(timeout, || self.connection_closed_at(connection))
            .await
    }

    /// The `session` object of the latest `session.update` received, as the client sent it.
    pub fn last_session(&self) -> Option<Value> {
        self.shared.record().last_session.clone()
    }

    /// The headers of each upgrade request, accepted or refused, in arrival order (names lowercased).
    pub fn request_headers(&self) -> Vec<Vec<(String, String)>> {
        self.shared
            .record()
            .upgrades
            .iter()
            .map(|u| u.headers.clone())
            .collect()
    }

    /// Every upgrade request, accepted or refused, in arrival order.
    pub fn upgrade_requests(&self) -> Vec<UpgradeRequest> {
        self.shared.record().upgrades.clone()
    }

    /// The `error` events the fake sent (e.g. rejected truncates), in order.
    pub fn errors_sent(&self) -> Vec<Value> {
        self.server_events_of_type("error")
    }

    /// The `error.code`s of [`FakeRealtime::errors_sent`], in order (`""` for an error without a code).
    pub fn error_codes_sent(&self) -> Vec<String> {
        self.errors_sent()
            .iter()
            .map(|e| {
                e.pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// The ms of audio the fake has sent in `response.output_audio.delta` events for assistant item `item_id`.
    pub fn audio_sent_ms(&self, item_id: &str) -> Option<u64> {
        self.shared.record().audio_sent_ms.get(item_id).copied()
    }

    /// Appends every client event received so far to `path` as one JSON object per line (creating the file and
    /// its parent directories), for `tests/conformance/test_realtime_events.py`.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn dump_jsonl(&self, path: &Path) {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).expect("creating the directory of the JSON-lines dump");
        }
        let mut lines = String::new();
        for event in self.client_events() {
            lines.push_str(&event.to_string());
            lines.push('\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("opening the JSON-lines dump for appending");
        file.write_all(lines.as_bytes())
            .expect("writing the JSON-lines dump");
    }

    /// Writes the client events received so far where the Python conformance check reads them
    /// (`tests/conformance/test_realtime_events.py`) and returns the file written: `$REALTIME_EVENTS_DIR/
    /// {scenario}.jsonl` when that variable is set (the Makefile sets it; each scenario gets its own file because
    /// nextest runs every test in its own process), else the file `$REALTIME_EVENTS_JSONL`, else
    /// `target/conformance/realtime-client-events.jsonl` in the crate. `scenario` is reduced to `[A-Za-z0-9_-]`.
    /// The file is appended to, so call this once per scenario, at its end.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn dump_for_conformance(&self, scenario: &str) -> PathBuf {
        let path = conformance_path(
            std::env::var_os("REALTIME_EVENTS_DIR"),
            std::env::var_os("REALTIME_EVENTS_JSONL"),
            scenario,
        );
        self.dump_jsonl(&path);
        path
    }

    /// Polls `check` after every recorded change until it returns `Some`, or `timeout` passes.
    async fn wait_until<T>(&self, timeout: Duration, check: impl Fn() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = check() {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return check();
            }
        }
    }
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Where [`FakeRealtime::dump_for_conformance`] writes, given `REALTIME_EVENTS_DIR` and `REALTIME_EVENTS_JSONL`.
fn conformance_path(
    events_dir: Option<OsString>,
    events_file: Option<OsString>,
    scenario: &str,
) -> PathBuf {
    if let Some(dir) = events_dir {
        let name: String = scenario
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(dir).join(format!("{name}.jsonl"))
    } else if let Some(file) = events_file {
        PathBuf::from(file)
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/conformance/realtime-client-events.jsonl")
    }
}

fn filter_type<'a>(events: impl Iterator<Item = &'a Value>, event_type: &str) -> Vec<Value> {
    events
        .filter(|e| e.get("type").and_then(Value::as_str) == Some(event_type))
        .cloned()
        .collect()
}

/// State shared by the handle and the connection tasks.
struct Shared {
    /// The script every connection plays.
    script: Script,
    /// Everything observed, for the assertions.
    record: Mutex<Record>,
    /// Woken on every new record, for the `wait_for_*` helpers.
    changed: Notify,
    /// Source of unique ids (events, items, responses, calls) across connections.
    next_id: AtomicU64,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        // A panicking test thread may poison the lock; the records are still worth reading.
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Record)) {
        f(&mut self.record());
        self.changed.notify_waiters();
    }

    /// Records that connection `connection` ended now, unless its end is already recorded (the first end wins).
    fn mark_closed(&self, connection: usize) {
        self.update(|record| {
            record
                .closed_at
                .entry(connection)
                .or_insert_with(std::time::Instant::now);
        });
    }

    fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_fake{n:016}")
    }
}

/// What the fake observed.
#[derive(Default)]
struct Record {
    /// (connection, event) for every client event.
    client_events: Vec<(usize, Value)>,
    /// (connection, event) for every server event.
    server_events: Vec<(usize, Value)>,
    /// Every upgrade request.
    upgrades: Vec<UpgradeRequest>,
    /// Accepted upgrades.
    connections: usize,
    /// The `session` of the latest `session.update`.
    last_session: Option<Value>,
    /// Audio sent per assistant item, in ms.
    audio_sent_ms: HashMap<String, u64>,
    /// When each accepted connection ended, by connection number (`std` time: what the scenario tests compare).
    closed_at: HashMap<usize, std::time::Instant>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _peer)) = accepted {
                    // Small events written back to back must not wait for the client's delayed ACK (Nagle).
                    if let Err(error) = stream.set_nodelay(true) {
                        eprintln!("fake realtime: TCP_NODELAY not set on an accepted socket: {error}");
                    }
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
            }
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Checks an upgrade request; `Err` is the HTTP refusal.
fn check_upgrade(request: &Request) -> Result<String, (StatusCode, &'static str)> {
    let path = request.uri().path();
    if path != "/v1/realtime" && path != "/openai/v1/realtime" {
        return Err((
            StatusCode::NOT_FOUND,
            "not found: the Realtime API is at /v1/realtime",
        ));
    }
    let model = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "model")
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty());
    let Some(model) = model else {
        return Err((
            StatusCode::BAD_REQUEST,
            "missing required query parameter: model",
        ));
    };
    let headers = request.headers();
    if headers.contains_key("openai-beta") {
        return Err((
            StatusCode::BAD_REQUEST,
            "OpenAI-Beta selects the beta interface; this fake speaks GA only",
        ));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    let api_key = headers.get("api-key").is_some_and(|v| !v.is_empty());
    if !bearer && !api_key {
        return Err((
            StatusCode::UNAUTHORIZED,
            "missing bearer authentication in header",
        ));
    }
    Ok(model)
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut model = None;
    // The `Err` type is tungstenite's `ErrorResponse`, fixed by its `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let checked = check_upgrade(request);
        let upgrade = UpgradeRequest {
            path_and_query: request
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            accepted: checked.is_ok(),
        };
        shared.update(|record| record.upgrades.push(upgrade));
        match checked {
            Ok(m) => {
                model = Some(m);
                Ok(response)
            }
            Err((status, body)) => {
                let mut refusal = ErrorResponse::new(Some(body.to_owned()));
                *refusal.status_mut() = status;
                Err(refusal)
            }
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let model = model.unwrap_or_default();
    let connection = {
        let mut record = shared.record();
        record.connections += 1;
        record.connections - 1
    };
    play(&mut ws, &shared, connection, &model).await;
    // Every way out of `play` ends the connection; the ends it records itself (close frames) were earlier.
    shared.mark_closed(connection);
}

/// Plays one accepted connection's session until either side ends it.
async fn play(
    ws: &mut WebSocketStream<TcpStream>,
    shared: &Arc<Shared>,
    connection: usize,
    model: &str,
) {
    let mut session = Session::new(Arc::clone(shared), model);
    loop {
        for event in session.take_outgoing() {
            let text = event.to_string();
            shared.update(|record| {
                if event.get("type").and_then(Value::as_str) == Some("response.output_audio.delta")
                    && let (Some(item_id), Some(ms)) = (
                        event.get("item_id").and_then(Value::as_str),
                        event
                            .get("delta")
                            .and_then(Value::as_str)
                            .map(|d| decoded_len(d) / ULAW_BYTES_PER_MS),
                    )
                {
                    *record.audio_sent_ms.entry(item_id.to_owned()).or_default() += ms;
                }
                record.server_events.push((connection, event));
            });
            if ws.send(Message::text(text)).await.is_err() {
                return;
            }
        }
        if session.close_requested {
            shared.mark_closed(connection);
            let frame = CloseFrame {
                code: CloseCode::from(shared.script.close_code),
                reason: Utf8Bytes::from("fake: scripted close"),
            };
            let _ = ws.close(Some(frame)).await;
            // Let the client's close reply arrive before the socket is dropped.
            drain_until_closed(ws).await;
            return;
        }
        let deadline = session.next_deadline();
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let recorded = match serde_json::from_str::<Value>(&text) {
                        Ok(value @ Value::Object(_)) => value,
                        _ => Value::String(text.to_string()),
                    };
                    let is_session_update =
                        recorded.get("type").and_then(Value::as_str) == Some("session.update");
                    shared.update(|record| {
                        if recorded.get("type").and_then(Value::as_str) == Some("session.update") {
                            record.last_session = recorded.get("session").cloned();
                        }
                        record.client_events.push((connection, recorded));
                    });
                    session.handle_text(&text, Instant::now());
                    if is_session_update && shared.script.stop_reading_after_session_update {
                        stop_reading(ws, &mut session).await;
                        return;
                    }
                }
                Some(Ok(Message::Binary(_))) => session.error(
                    None,
                    "invalid_request_error",
                    "invalid_message",
                    "Binary frames are not supported; send JSON text frames.",
                    None,
                ),
                Some(Ok(Message::Close(_))) => {
                    shared.mark_closed(connection);
                    // Reading on sends tungstenite's queued close reply, completing the client's handshake.
                    drain_until_closed(ws).await;
                    return;
                }
                Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            () = sleep_until_option(deadline) => session.tick(Instant::now()),
        }
    }
}

/// Answers what is pending (`session.updated`), then holds the socket open without ever reading it again, for at most
/// a minute: the client's sends fill the (shrunk) receive buffer and stop.
async fn stop_reading(ws: &mut WebSocketStream<TcpStream>, session: &mut Session) {
    for event in session.take_outgoing() {
        if ws.send(Message::text(event.to_string())).await.is_err() {
            return;
        }
    }
    if let Err(error) = socket2::SockRef::from(ws.get_ref()).set_recv_buffer_size(4096) {
        eprintln!("fake realtime: receive buffer not shrunk: {error}");
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Reads (and drops) whatever still arrives until the socket ends, for at most a second, so that close handshakes
/// complete before the socket is dropped.
async fn drain_until_closed(ws: &mut WebSocketStream<TcpStream>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn sleep_until_option(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Bytes a base64 string decodes to (0 when it is not valid base64).
fn decoded_len(b64: &str) -> u64 {
    BASE64
        .decode(b64)
        .map(|bytes| bytes.len() as u64)
        .unwrap_or(0)
}

/// Turn detection settings read from the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TurnDetection {
    enabled: bool,
    create_response: bool,
    interrupt_response: bool,
    silence_duration_ms: u64,
    prefix_padding_ms: u64,
}

impl TurnDetection {
    fn from_session(session: &Value) -> Self {
        let config = session.pointer("/audio/input/turn_detection");
        let flag = |name: &str| {
            config
                .and_then(|c| c.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(true)
        };
        let ms = |name: &str, default: u64| {
            config
                .and_then(|c| c.get(name))
                .and_then(Value::as_u64)
                .unwrap_or(default)
        };
        Self {
            enabled: !matches!(config, Some(Value::Null)),
            create_response: flag("create_response"),
            interrupt_response: flag("interrupt_response"),
            silence_duration_ms: ms("silence_duration_ms", DEFAULT_SILENCE_DURATION_MS),
            prefix_padding_ms: ms("prefix_padding_ms", DEFAULT_PREFIX_PADDING_MS),
        }
    }
}

/// A VAD transition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VadEvent {
    Started { audio_start_ms: u64 },
    Stopped { audio_end_ms: u64 },
}

/// Energy-based voice activity detection over the session's input stream.
#[derive(Debug, Default)]
struct Vad {
    /// Bytes of an incomplete frame, kept for the next append.
    carry: Vec<u8>,
    /// Whole frames processed since the session started.
    frames: u64,
    /// Consecutive speech frames while in silence, in ms.
    speech_run_ms: u64,
    /// Stream position of the first frame of that run, in ms.
    speech_run_start_ms: u64,
    /// `Some(silence run in ms)` while in speech.
    in_speech: Option<u64>,
}

impl Vad {
    /// Feeds μ-law bytes; returns the transitions they caused, in order.
    fn push(&mut self, ulaw: &[u8], turn: TurnDetection) -> Vec<VadEvent> {
        let frame_bytes = (VAD_FRAME_MS * ULAW_BYTES_PER_MS) as usize;
        self.carry.extend_from_slice(ulaw);
        let mut events = Vec::new();
        let whole = self.carry.len() / frame_bytes * frame_bytes;
        let frames: Vec<u8> = self.carry.drain(..whole).collect();
        for frame in frames.chunks_exact(frame_bytes) {
            let start_ms = self.frames * VAD_FRAME_MS;
            self.frames += 1;
            if !turn.enabled {
                continue;
            }
            let speech = frame_rms(frame) >= SPEECH_RMS_THRESHOLD;
            match self.in_speech {
                None if speech => {
                    if self.speech_run_ms == 0 {
                        self.speech_run_start_ms = start_ms;
                    }
                    self.speech_run_ms += VAD_FRAME_MS;
                    if self.speech_run_ms >= SPEECH_START_MS {
                        self.in_speech = Some(0);
                        self.speech_run_ms = 0;
                        let audio_start_ms = self
                            .speech_run_start_ms
                            .saturating_sub(turn.prefix_padding_ms);
                        events.push(VadEvent::Started { audio_start_ms });
                    }
                }
                None => self.speech_run_ms = 0,
                Some(_) if speech => self.in_speech = Some(0),
                Some(silence_ms) => {
                    let silence_ms = silence_ms + VAD_FRAME_MS;
                    if silence_ms >= turn.silence_duration_ms {
                        self.in_speech = None;
                        events.push(VadEvent::Stopped {
                            audio_end_ms: start_ms + VAD_FRAME_MS,
                        });
                    } else {
                        self.in_speech = Some(silence_ms);
                    }
                }
            }
        }
        events
    }

    /// Forgets any speech in progress (after `input_audio_buffer.clear`).
    fn reset_turn(&mut self) {
        self.in_speech = None;
        self.speech_run_ms = 0;
    }

    /// Position of the input stream, in ms (whole frames plus carried bytes).
    fn position_ms(&self) -> u64 {
        self.frames * VAD_FRAME_MS + self.carry.len() as u64 / ULAW_BYTES_PER_MS
    }
}

/// RMS of a μ-law frame's decoded 16-bit PCM samples.
pub fn frame_rms(ulaw: &[u8]) -> f64 {
    if ulaw.is_empty() {
        return 0.0;
    }
    let sum: f64 = ulaw
        .iter()
        .map(|&b| f64::from(ulaw_to_linear(b)).powi(2))
        .sum();
    (sum / ulaw.len() as f64).sqrt()
}

/// G.711 μ-law byte → 16-bit linear PCM sample.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let sample = if u & 0x80 != 0 { -magnitude } else { magnitude };
    i16::try_from(sample).expect("a μ-law magnitude is at most 32124")
}

/// 16-bit linear PCM sample → G.711 μ-law byte.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    let top = u8::try_from((s >> 7) & 0xFF).expect("masked to 8 bits");
    let exponent = if top == 0 { 0 } else { 7 - top.leading_zeros() };
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    let byte = sign | (i32::try_from(exponent).expect("exponent < 8") << 4) | mantissa;
    !u8::try_from(byte).expect("sign, exponent and mantissa fit 8 bits")
}

/// One period (20 samples, 400 Hz at 8 kHz) of the tone the fake "speaks".
fn tone_period() -> [u8; 20] {
    std::array::from_fn(|i| {
        let phase = i as f64 / 20.0 * std::f64::consts::TAU;
        linear_to_ulaw((phase.sin() * 8000.0) as i16)
    })
}

/// `ms` of tone starting `offset_ms` into the item, as μ-law bytes (phase-continuous across deltas).
fn tone(offset_ms: u64, ms: u64) -> Vec<u8> {
    let period = tone_period();
    let start = offset_ms * ULAW_BYTES_PER_MS;
    (start..start + ms * ULAW_BYTES_PER_MS)
        .map(|i| period[(i % 20) as usize])
        .collect()
}

/// What an item in the conversation is, as far as truncation cares.
#[derive(Debug, Clone)]
enum ItemKind {
    /// An assistant audio message and the ms of audio it holds (sent, possibly truncated since).
    AssistantAudio { audio_ms: u64 },
    /// Anything else (user message, function call, function call output, system message).
    Other,
}

/// Where the active response is.
#[derive(Debug)]
enum Phase {
    /// `response.created` sent; output starts at this instant.
    Waiting { start_at: Instant },
    /// Audio deltas flowing; the next is due at `next_at`.
    Streaming {
        item_id: String,
        next_at: Instant,
        sent_ms: u64,
    },
}

#[derive(Debug)]
struct ActiveResponse {
    id: String,
    plan: ScriptedResponse,
    phase: Phase,
    /// When server VAD will cancel this response (speech started with `interrupt_response`).
    vad_cancel_at: Option<Instant>,
}

/// One Realtime session: the synchronous state machine behind a connection. It queues outgoing events; the
/// connection loop sends them and asks for the next timer deadline.
struct Session {
    shared: Arc<Shared>,
    /// The current session object (`session.created`'s, merged with every `session.update`).
    session: Value,
    turn: TurnDetection,
    vad: Vad,
    /// The user item of the speech in progress.
    speech_item_id: Option<String>,
    /// Input bytes appended since the last commit (for `input_audio_buffer.commit`).
    uncommitted_bytes: u64,
    responses: VecDeque<ScriptedResponse>,
    transcripts: VecDeque<String>,
    active: Option<ActiveResponse>,
    items: HashMap<String, (ItemKind, Value)>,
    last_item_id: Option<String>,
    conversation_id: String,
    close_at: Option<Instant>,
    close_requested: bool,
    /// Whether a `session.update` was applied on this connection (the error flood follows the first).
    updated_once: bool,
    outgoing: Vec<Value>,
}

impl Session {
    fn new(shared: Arc<Shared>, model: &str) -> Self {
        let expires_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            + 3600;
        let session = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": shared.new_id("sess"),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "You are a helpful assistant.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": null,
            "truncation": "auto",
            "prompt": null,
            "expires_at": expires_at,
            "include": null,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": null,
                    "noise_reduction": null,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": DEFAULT_PREFIX_PADDING_MS,
                        "silence_duration_ms": DEFAULT_SILENCE_DURATION_MS,
                        "idle_timeout_ms": null,
                        "create_response": true,
                        "interrupt_response": true
                    }
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0}
            }
        });
        let script = &shared.script;
        let mut this = Self {
            turn: TurnDetection::from_session(&session),
            responses: script.responses.iter().cloned().collect(),
            transcripts: script.caller_transcripts.iter().cloned().collect(),
            conversation_id: shared.new_id("conv"),
            shared: Arc::clone(&shared),
            session,
            vad: Vad::default(),
            speech_item_id: None,
            uncommitted_bytes: 0,
            active: None,
            items: HashMap::new(),
            last_item_id: None,
            close_at: None,
            close_requested: false,
            updated_once: false,
            outgoing: Vec::new(),
        };
        let created = json!({"type": "session.created", "session": this.session.clone()});
        this.emit(created);
        this
    }

    fn take_outgoing(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.outgoing)
    }

    /// Queues `event`, giving it an `event_id` first.
    fn emit(&mut self, mut event: Value) {
        if let Value::Object(map) = &mut event {
            let mut with_id = Map::new();
            with_id.insert(
                "event_id".into(),
                Value::String(self.shared.new_id("event")),
            );
            with_id.append(map);
            *map = with_id;
        }
        self.outgoing.push(event);
    }

    /// Queues an `error` event.
    fn error(
        &mut self,
        client_event_id: Option<&str>,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
    ) {
        self.emit(json!({
            "type": "error",
            "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": client_event_id}
        }));
    }

    /// The earliest instant something is due, if any.
    fn next_deadline(&self) -> Option<Instant> {
        let response = self.active.as_ref().map(|active| {
            let phase_at = match &active.phase {
                Phase::Waiting { start_at } => *start_at,
                Phase::Streaming { next_at, .. } => *next_at,
            };
            active
                .vad_cancel_at
                .map_or(phase_at, |cancel_at| cancel_at.min(phase_at))
        });
        [response, self.close_at].into_iter().flatten().min()
    }

    /// Does everything due at `now`.
    fn tick(&mut self, now: Instant) {
        if self.close_at.is_some_and(|at| at <= now) {
            self.close_requested = true;
            return;
        }
        if let Some(active) = &self.active
            && active.vad_cancel_at.is_some_and(|at| at <= now)
        {
            self.cancel_active("turn_detected");
        }
        if let Some(ActiveResponse {
            phase: Phase::Waiting { start_at },
            ..
        }) = &self.active
            && *start_at <= now
        {
            self.begin_output(now);
        }
        let interval = self.delta_interval();
        while let Some(ActiveResponse {
            phase: Phase::Streaming { next_at, .. },
            ..
        }) = &self.active
            && *next_at <= now
        {
            self.send_delta(interval);
        }
    }

    fn delta_interval(&self) -> Duration {
        let script = &self.shared.script;
        if script.speed_up > 0.0 {
            Duration::from_secs_f64(script.delta_ms as f64 / 1000.0 / script.speed_up)
        } else {
            Duration::ZERO
        }
    }

    fn handle_text(&mut self, text: &str, now: Instant) {
        let event = match serde_json::from_str::<Value>(text) {
            Ok(event @ Value::Object(_)) => event,
            Ok(_) => {
                self.error(
                    None,
                    "invalid_request_error",
                    "invalid_json",
                    "Expected a JSON object.",
                    None,
                );
                return;
            }
            Err(e) => {
                let message = format!("We could not parse the JSON body of your request: {e}");
                self.error(
                    None,
                    "invalid_request_error",
                    "invalid_json",
                    &message,
                    None,
                );
                return;
            }
        };
        let event_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = event_id.as_deref();
        match event.get("type").and_then(Value::as_str) {
            Some("session.update") => self.session_update(&event, id, now),
            Some("input_audio_buffer.append") => self.append(&event, id, now),
            Some("input_audio_buffer.commit") => self.commit(id),
            Some("input_audio_buffer.clear") => {
                self.vad.reset_turn();
                self.speech_item_id = None;
                self.uncommitted_bytes = 0;
                self.emit(json!({"type": "input_audio_buffer.cleared"}));
            }
            Some("conversation.item.create") => self.item_create(&event, id),
            Some("conversation.item.truncate") => self.truncate(&event, id),
            Some("conversation.item.delete") => self.item_delete(&event, id),
            Some("conversation.item.retrieve") => self.item_retrieve(&event, id),
            Some("response.create") => {
                if let Some(active) = &self.active {
                    let message = format!(
                        "Conversation already has an active response in progress: {}. Wait until the response is \
                         finished before creating a new one.",
                        active.id
                    );
                    self.error(
                        id,
                        "invalid_request_error",
                        "conversation_already_has_active_response",
                        &message,
                        None,
                    );
                } else {
                    self.start_response(now);
                }
            }
            Some("response.cancel") => {
                let wanted = event.get("response_id").and_then(Value::as_str);
                let matches = self
                    .active
                    .as_ref()
                    .is_some_and(|a| wanted.is_none_or(|w| w == a.id));
                if matches {
                    self.cancel_active("client_cancelled");
                } else {
                    let message = "Cancellation failed: no active response found";
                    self.error(
                        id,
                        "invalid_request_error",
                        "response_cancel_not_active",
                        message,
                        None,
                    );
                }
            }
            Some("output_audio_buffer.clear") => {
                let message =
                    "output_audio_buffer.clear is only supported for WebRTC and SIP connections.";
                self.error(
                    id,
                    "invalid_request_error",
                    "invalid_value",
                    message,
                    Some("type"),
                );
            }
            Some(other) => {
                let supported = CLIENT_EVENT_TYPES
                    .iter()
                    .map(|t| format!("'{t}'"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let message =
                    format!("Invalid value: '{other}'. Supported values are: {supported}.");
                self.error(
                    id,
                    "invalid_request_error",
                    "invalid_value",
                    &message,
                    Some("type"),
                );
            }
            None => {
                let message = "Missing required parameter: 'type'.";
                self.error(
                    id,
                    "invalid_request_error",
                    "missing_required_parameter",
                    message,
                    Some("type"),
                );
            }
        }
    }

    fn session_update(&mut self, event: &Value, id: Option<&str>, now: Instant) {
        let Some(update) = event.get("session").and_then(Value::as_object) else {
            let message = "Missing required parameter: 'session'.";
            self.error(
                id,
                "invalid_request_error",
                "missing_required_parameter",
                message,
                Some("session"),
            );
            return;
        };
        if let Some(unknown) = update
            .keys()
            .find(|k| !GA_SESSION_KEYS.contains(&k.as_str()))
        {
            let message = format!("Unknown parameter: 'session.{unknown}'.");
            let param = format!("session.{unknown}");
            self.error(
                id,
                "invalid_request_error",
                "unknown_parameter",
                &message,
                Some(&param),
            );
            return;
        }
        if update.get("type").and_then(Value::as_str) != Some("realtime") {
            let message = "Missing required parameter: 'session.type'.";
            self.error(
                id,
                "invalid_request_error",
                "missing_required_parameter",
                message,
                Some("session.type"),
            );
            return;
        }
        merge(&mut self.session, &Value::Object(update.clone()));
        self.turn = TurnDetection::from_session(&self.session);
        let first_update = !self.updated_once;
        self.updated_once = true;
        if self.close_at.is_none()
            && let Some(after) = self.shared.script.close_after
        {
            self.close_at = Some(now + after);
        }
        let updated = json!({"type": "session.updated", "session": self.session.clone()});
        self.emit(updated);
        if first_update {
            for _ in 0..self.shared.script.error_flood {
                let message = "Conversation already has an active response in progress. Wait until the response \
                               is finished before creating a new one.";
                self.error(
                    None,
                    "invalid_request_error",
                    "conversation_already_has_active_response",
                    message,
                    None,
                );
            }
        }
    }

    fn append(&mut self, event: &Value, id: Option<&str>, now: Instant) {
        let Some(audio) = event.get("audio") else {
            let message = "Missing required parameter: 'audio'.";
            self.error(
                id,
                "invalid_request_error",
                "missing_required_parameter",
                message,
                Some("audio"),
            );
            return;
        };
        let Some(bytes) = audio.as_str().and_then(|a| BASE64.decode(a).ok()) else {
            let message = "Invalid 'audio'. Expected base64-encoded audio bytes.";
            self.error(
                id,
                "invalid_request_error",
                "invalid_value",
                message,
                Some("audio"),
            );
            return;
        };
        self.uncommitted_bytes += bytes.len() as u64;
        for vad_event in self.vad.push(&bytes, self.turn) {
            match vad_event {
                VadEvent::Started { audio_start_ms } => self.speech_started(audio_start_ms, now),
                VadEvent::Stopped { audio_end_ms } => self.speech_stopped(audio_end_ms, now),
            }
        }
    }

    fn speech_started(&mut self, audio_start_ms: u64, now: Instant) {
        let item_id = self.shared.new_id("item");
        self.speech_item_id = Some(item_id.clone());
        self.emit(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": audio_start_ms, "item_id": item_id}));
        if self.turn.interrupt_response
            && let Some(active) = &mut self.active
        {
            let cancel_at = now + self.shared.script.interrupt_delay;
            active.vad_cancel_at.get_or_insert(cancel_at);
            if self.shared.script.interrupt_delay.is_zero() {
                self.cancel_active("turn_detected");
            }
        }
    }

    fn speech_stopped(&mut self, audio_end_ms: u64, now: Instant) {
        let item_id = self
            .speech_item_id
            .take()
            .unwrap_or_else(|| self.shared.new_id("item"));
        self.emit(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": audio_end_ms, "item_id": item_id}));
        self.commit_user_item(item_id);
        if self.turn.create_response && self.active.is_none() {
            self.start_response(now);
        }
    }

    fn commit(&mut self, id: Option<&str>) {
        let buffered_ms = self.uncommitted_bytes / ULAW_BYTES_PER_MS;
        if buffered_ms < 100 {
            let message = format!(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer \
                 only has {buffered_ms}.00ms of audio."
            );
            self.error(
                id,
                "invalid_request_error",
                "input_audio_buffer_commit_empty",
                &message,
                None,
            );
            return;
        }
        self.vad.reset_turn();
        let item_id = self
            .speech_item_id
            .take()
            .unwrap_or_else(|| self.shared.new_id("item"));
        self.commit_user_item(item_id);
    }

    /// `committed`, the user item, and its transcription.
    fn commit_user_item(&mut self, item_id: String) {
        self.uncommitted_bytes = 0;
        let previous = self.last_item_id.clone();
        self.emit(json!({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id}));
        let item = json!({
            "id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_audio", "transcript": null}]
        });
        self.add_item(item_id.clone(), ItemKind::Other, item);
        let transcript = self.transcripts.pop_front().unwrap_or_default();
        let words = transcript.split_whitespace().count() as u64;
        self.emit(json!({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": transcript,
            "usage": {"type": "tokens", "input_tokens": 20, "output_tokens": words, "total_tokens": 20 + words,
                      "input_token_details": {"audio_tokens": 20, "text_tokens": 0}}
        }));
    }

    /// `conversation.item.added` and `.done` for a complete item, and remembers it.
    fn add_item(&mut self, item_id: String, kind: ItemKind, item: Value) {
        let previous = self.last_item_id.replace(item_id.clone());
        self.emit(
            json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}),
        );
        self.emit(
            json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}),
        );
        self.items.insert(item_id, (kind, item));
    }

    fn item_create(&mut self, event: &Value, id: Option<&str>) {
        let Some(item) = event.get("item").and_then(Value::as_object) else {
            let message = "Missing required parameter: 'item'.";
            self.error(
                id,
                "invalid_request_error",
                "missing_required_parameter",
                message,
                Some("item"),
            );
            return;
        };
        if item.get("type").and_then(Value::as_str).is_none() {
            let message = "Missing required parameter: 'item.type'.";
            self.error(
                id,
                "invalid_request_error",
                "missing_required_parameter",
                message,
                Some("item.type"),
            );
            return;
        }
        let mut item = item.clone();
        let item_id = match item.get("id").and_then(Value::as_str) {
            Some(item_id) => item_id.to_owned(),
            None => self.shared.new_id("item"),
        };
        item.insert("id".into(), Value::String(item_id.clone()));
        item.insert("object".into(), Value::String("realtime.item".into()));
        item.insert("status".into(), Value::String("completed".into()));
        self.add_item(item_id, ItemKind::Other, Value::Object(item));
    }

    fn item_delete(&mut self, event: &Value, id: Option<&str>) {
        let item_id = event
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if self.items.remove(&item_id).is_none() {
            self.item_not_found(id, &item_id);
            return;
        }
        self.emit(json!({"type": "conversation.item.deleted", "item_id": item_id}));
    }

    fn item_retrieve(&mut self, event: &Value, id: Option<&str>) {
        let item_id = event
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match self.items.get(&item_id) {
            Some((_, item)) => {
                let item = item.clone();
                self.emit(json!({"type": "conversation.item.retrieved", "item": item}));
            }
            None => self.item_not_found(id, &item_id),
        }
    }

    fn item_not_found(&mut self, id: Option<&str>, item_id: &str) {
        let message = format!("Conversation item with item_id '{item_id}' not found.");
        self.error(
            id,
            "invalid_request_error",
            "invalid_value",
            &message,
            Some("item_id"),
        );
    }

    fn truncate(&mut self, event: &Value, id: Option<&str>) {
        let (Some(item_id), Some(content_index), Some(audio_end_ms)) = (
            event.get("item_id").and_then(Value::as_str),
            event.get("content_index").and_then(Value::as_u64),
            event.get("audio_end_ms").and_then(Value::as_u64),
        ) else {
            let missing = ["item_id", "content_index", "audio_end_ms"]
                .into_iter()
                .find(|k| event.get(*k).is_none_or(Value::is_null))
                .unwrap_or("audio_end_ms");
            let message = format!("Missing required parameter or invalid type: '{missing}'.");
            self.error(
                id,
                "invalid_request_error",
                "invalid_value",
                &message,
                Some(missing),
            );
            return;
        };
        let item_id = item_id.to_owned();
        let Some((kind, _)) = self.items.get(&item_id) else {
            self.item_not_found(id, &item_id);
            return;
        };
        let available_ms = match kind {
            ItemKind::AssistantAudio { audio_ms } if *audio_ms > 0 => *audio_ms,
            _ => {
                let message = "Only model output audio messages can be truncated";
                self.error(
                    id,
                    "invalid_request_error",
                    "unsupported_content_type",
                    message,
                    None,
                );
                return;
            }
        };
        if content_index != 0 {
            let message =
                format!("Invalid 'content_index': item has no content part {content_index}.");
            self.error(
                id,
                "invalid_request_error",
                "invalid_value",
                &message,
                Some("content_index"),
            );
            return;
        }
        if audio_end_ms > available_ms {
            let message = format!(
                "Audio content of {available_ms}ms is already shorter than {audio_end_ms}ms"
            );
            self.error(
                id,
                "invalid_request_error",
                "invalid_value",
                &message,
                Some("audio_end_ms"),
            );
            return;
        }
        if let Some((ItemKind::AssistantAudio { audio_ms }, _)) = self.items.get_mut(&item_id) {
            *audio_ms = audio_end_ms;
        }
        self.emit(json!({
            "type": "conversation.item.truncated", "item_id": item_id, "content_index": content_index,
            "audio_end_ms": audio_end_ms
        }));
    }

    fn response_object(
        &self,
        id: &str,
        status: &str,
        status_details: Value,
        output: Value,
        usage: Value,
    ) -> Value {
        json!({
            "object": "realtime.response",
            "id": id,
            "status": status,
            "status_details": status_details,
            "output": output,
            "conversation_id": self.conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {
                "format": self.session.pointer("/audio/output/format").cloned().unwrap_or(Value::Null),
                "voice": self.session.pointer("/audio/output/voice").cloned().unwrap_or(Value::Null)
            }},
            "usage": usage,
            "metadata": null
        })
    }

    fn start_response(&mut self, now: Instant) {
        let plan = self.responses.pop_front().unwrap_or_else(fallback_response);
        let id = self.shared.new_id("resp");
        let response =
            self.response_object(&id, "in_progress", Value::Null, json!([]), Value::Null);
        self.emit(json!({"type": "response.created", "response": response}));
        let start_at = now + self.shared.script.response_delay;
        self.active = Some(ActiveResponse {
            id,
            plan,
            phase: Phase::Waiting { start_at },
            vad_cancel_at: None,
        });
    }

    fn begin_output(&mut self, now: Instant) {
        let Some(active) = self.active.take() else {
            return;
        };
        let response_id = active.id.clone();
        let item_id = self.shared.new_id("item");
        match &active.plan {
            ScriptedResponse::Speak { audio_ms, .. } => {
                let item = json!({
                    "id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []
                });
                self.emit(json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": item}));
                let previous = self.last_item_id.replace(item_id.clone());
                self.emit(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}));
                self.items.insert(
                    item_id.clone(),
                    (ItemKind::AssistantAudio { audio_ms: 0 }, item),
                );
                self.emit(json!({
                    "type": "response.content_part.added", "response_id": response_id, "item_id": item_id,
                    "output_index": 0, "content_index": 0, "part": {"type": "audio", "transcript": ""}
                }));
                let audio_ms = *audio_ms;
                self.active = Some(ActiveResponse {
                    phase: Phase::Streaming {
                        item_id,
                        next_at: now,
                        sent_ms: 0,
                    },
                    ..active
                });
                if audio_ms == 0 {
                    self.finish_speak("completed", None);
                }
            }
            ScriptedResponse::CallTool { name, arguments } => {
                let call_id = self.shared.new_id("call");
                let item = |status: &str, arguments: &str| {
                    json!({
                        "id": item_id, "object": "realtime.item", "type": "function_call", "status": status,
                        "name": name, "call_id": call_id, "arguments": arguments
                    })
                };
                let (added, done) = (item("in_progress", ""), item("completed", arguments));
                self.emit(json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": added}));
                let previous = self.last_item_id.replace(item_id.clone());
                self.emit(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": added}));
                self.emit(json!({
                    "type": "response.function_call_arguments.delta", "response_id": response_id, "item_id": item_id,
                    "output_index": 0, "call_id": call_id, "delta": arguments
                }));
                self.emit(json!({
                    "type": "response.function_call_arguments.done", "response_id": response_id, "item_id": item_id,
                    "output_index": 0, "call_id": call_id, "name": name, "arguments": arguments
                }));
                self.emit(json!({"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": done}));
                self.emit(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": done}));
                self.items.insert(item_id, (ItemKind::Other, done.clone()));
                let usage = self.usage(arguments, 0);
                let status_details = json!({"type": "completed"});
                let response = self.response_object(
                    &response_id,
                    "completed",
                    status_details,
                    json!([done]),
                    usage,
                );
                self.emit(json!({"type": "response.done", "response": response}));
                self.emit_rate_limits();
            }
        }
    }

    /// Sends the next audio delta of the streaming response, due again `interval` later; finishes the response
    /// after its last one.
    fn send_delta(&mut self, interval: Duration) {
        if let Some(ActiveResponse {
            phase: Phase::Streaming { next_at, .. },
            ..
        }) = &mut self.active
        {
            *next_at += interval;
        }
        if self.emit_delta() == Some(true) {
            self.finish_speak("completed", None);
        }
    }

    /// Emits the next audio delta of the streaming Speak response (at most [`Script::delta_ms`], the rest of its
    /// audio at the end) and records it as the item's audio. Returns whether the response's audio is now all sent,
    /// or `None` when no Speak response is streaming or its audio was already all sent (nothing emitted).
    fn emit_delta(&mut self) -> Option<bool> {
        let Some(ActiveResponse {
            id,
            plan: ScriptedResponse::Speak { audio_ms, .. },
            phase: Phase::Streaming {
                item_id, sent_ms, ..
            },
            ..
        }) = &mut self.active
        else {
            return None;
        };
        let remaining_ms = audio_ms.saturating_sub(*sent_ms);
        if remaining_ms == 0 {
            return None;
        }
        let ms = self.shared.script.delta_ms.max(1).min(remaining_ms);
        let delta = BASE64.encode(tone(*sent_ms, ms));
        *sent_ms += ms;
        let all_sent = *sent_ms >= *audio_ms;
        let (response_id, item_id, sent) = (id.clone(), item_id.clone(), *sent_ms);
        if let Some((ItemKind::AssistantAudio { audio_ms }, _)) = self.items.get_mut(&item_id) {
            *audio_ms = sent;
        }
        self.emit(json!({
            "type": "response.output_audio.delta", "response_id": response_id, "item_id": item_id,
            "output_index": 0, "content_index": 0, "delta": delta
        }));
        Some(all_sent)
    }

    /// Cancels the active response (server VAD or `response.cancel`); a streaming one first sends its
    /// [`Script::late_deltas_after_cancel`] in-flight deltas.
    fn cancel_active(&mut self, reason: &str) {
        match self.active.as_ref().map(|a| &a.phase) {
            Some(Phase::Streaming { .. }) => {
                for _ in 0..self.shared.script.late_deltas_after_cancel {
                    if self.emit_delta() != Some(false) {
                        break;
                    }
                }
                self.finish_speak("cancelled", Some(reason));
            }
            Some(Phase::Waiting { .. }) => {
                let Some(active) = self.active.take() else {
                    return;
                };
                let usage = self.usage("", 0);
                let details = json!({"type": "cancelled", "reason": reason});
                let response =
                    self.response_object(&active.id, "cancelled", details, json!([]), usage);
                self.emit(json!({"type": "response.done", "response": response}));
                self.emit_rate_limits();
            }
            None => {}
        }
    }

    /// Ends the streaming Speak response: transcript, done events, `response.done` with `status`.
    fn finish_speak(&mut self, status: &str, reason: Option<&str>) {
        let Some(ActiveResponse {
            id: response_id,
            plan: ScriptedResponse::Speak { transcript, .. },
            phase: Phase::Streaming {
                item_id, sent_ms, ..
            },
            ..
        }) = self.active.take()
        else {
            return;
        };
        let ids = json!({"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0});
        let with = |event_type: &str, extra: Value| {
            let mut event = ids.clone();
            if let (Value::Object(event), Value::Object(extra)) = (&mut event, extra) {
                event.insert("type".into(), Value::String(event_type.into()));
                event.extend(extra);
            }
            event
        };
        if status == "completed" {
            for word in transcript.split_inclusive(' ') {
                self.emit(with(
                    "response.output_audio_transcript.delta",
                    json!({"delta": word}),
                ));
            }
        }
        self.emit(with(
            "response.output_audio_transcript.done",
            json!({"transcript": transcript}),
        ));
        self.emit(with("response.output_audio.done", json!({})));
        self.emit(with(
            "response.content_part.done",
            json!({"part": {"type": "audio", "transcript": transcript}}),
        ));
        let item_status = if status == "completed" {
            "completed"
        } else {
            "incomplete"
        };
        let item = json!({
            "id": item_id, "object": "realtime.item", "type": "message", "status": item_status, "role": "assistant",
            "content": [{"type": "output_audio", "transcript": transcript}]
        });
        self.emit(json!({"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": item}));
        let previous = self.items_before(&item_id);
        self.emit(
            json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}),
        );
        if let Some((_, stored)) = self.items.get_mut(&item_id) {
            *stored = item.clone();
        }
        let usage = self.usage(&transcript, sent_ms);
        let details = match reason {
            Some(reason) => json!({"type": status, "reason": reason}),
            None => json!({"type": status}),
        };
        let response = self.response_object(&response_id, status, details, json!([item]), usage);
        self.emit(json!({"type": "response.done", "response": response}));
        self.emit_rate_limits();
    }

    /// The id of the item before `item_id` in the conversation, as far as this fake knows (the last one added
    /// before it); used only for the informational `previous_item_id`.
    fn items_before(&self, item_id: &str) -> Value {
        match &self.last_item_id {
            Some(last) if last != item_id => Value::String(last.clone()),
            _ => Value::Null,
        }
    }

    /// A plausible, deterministic usage object (`RealtimeResponseUsage`): 100 input text tokens, one input audio
    /// token per 100 ms of caller audio so far, one output text token per word, one output audio token per 50 ms.
    fn usage(&self, output_text: &str, output_audio_ms: u64) -> Value {
        let input_text = 100;
        let input_audio = self.vad.position_ms() / 100;
        let output_text = output_text.split_whitespace().count() as u64;
        let output_audio = output_audio_ms / 50;
        let input = input_text + input_audio;
        let output = output_text + output_audio;
        json!({
            "total_tokens": input + output,
            "input_tokens": input,
            "output_tokens": output,
            "input_token_details": {"text_tokens": input_text, "audio_tokens": input_audio, "cached_tokens": 0,
                                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0}},
            "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio}
        })
    }

    fn emit_rate_limits(&mut self) {
        self.emit(json!({
            "type": "rate_limits.updated",
            "rate_limits": [
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5}
            ]
        }));
    }
}

/// Merges `update` into `target`: objects key by key (recursively), anything else replaces.
fn merge(target: &mut Value, update: &Value) {
    match (target, update) {
        (Value::Object(target), Value::Object(update)) => {
            for (key, value) in update {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, update) => *target = update.clone(),
    }
}

mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    const HELLO: &[u8] = include_bytes!("../fixtures/caller-hello.ulaw");
    const INTERRUPT: &[u8] = include_bytes!("../fixtures/caller-interrupt.ulaw");
    const WAIT: Duration = Duration::from_secs(5);

    async fn connect(fake: &FakeRealtime) -> Client {
        let mut request = format!("{}?model=gpt-realtime-2.1", fake.url())
            .into_client_request()
            .expect("valid URL");
        request.headers_mut().insert(
            "authorization",
            "Bearer sk-test".parse().expect("valid header"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the fake accepts the upgrade");
        let created = next_event(&mut ws).await;
        assert_eq!(created["type"], "session.created");
        ws
    }

    async fn send(ws: &mut Client, event: Value) {
        ws.send(Message::text(event.to_string()))
            .await
            .expect("sending to the fake");
    }

    async fn next_event(ws: &mut Client) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("an event within the wait")
                .expect("open");
            if let Message::Text(text) = message.expect("a frame") {
                return serde_json::from_str(&text).expect("the fake sends JSON");
            }
        }
    }

    /// Reads events until one of type `until` (inclusive); returns them all.
    async fn events_until(ws: &mut Client, until: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = next_event(ws).await;
            let done = event["type"] == until;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Reads a response's events up to `response.done` (inclusive), then checks and drops the
    /// `rate_limits.updated` that follows it.
    async fn response_events(ws: &mut Client) -> Vec<Value> {
        let events = events_until(ws, "response.done").await;
        assert_eq!(next_event(ws).await["type"], "rate_limits.updated");
        events
    }

    async fn session_update(ws: &mut Client) {
        let session = json!({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}},
                                                           "output": {"format": {"type": "audio/pcmu"}}}});
        send(ws, json!({"type": "session.update", "session": session})).await;
        let updated = events_until(ws, "session.updated").await;
        assert_eq!(
            updated.len(),
            1,
            "nothing but session.updated answers session.update: {updated:?}"
        );
    }

    /// Appends `ulaw` in 20 ms Twilio-sized frames, without pacing.
    async fn append_audio(ws: &mut Client, ulaw: &[u8]) {
        for frame in ulaw.chunks(160) {
            send(
                ws,
                json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(frame)}),
            )
            .await;
        }
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default())
            .collect()
    }

    fn delta_bytes(events: &[Value]) -> usize {
        events
            .iter()
            .filter(|e| e["type"] == "response.output_audio.delta")
            .map(|e| {
                BASE64
                    .decode(e["delta"].as_str().expect("delta is a string"))
                    .expect("valid base64")
                    .len()
            })
            .sum()
    }

    fn speak_script(audio_ms: u64) -> Script {
        Script {
            responses: vec![ScriptedResponse::speak(audio_ms, "A table for four.")],
            ..Script::default()
        }
    }

    #[tokio::test]
    async fn the_espeak_fixture_triggers_speech_started_then_speech_stopped() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        append_audio(&mut ws, HELLO).await;
        append_audio(&mut ws, &[ULAW_SILENCE; 8 * 700]).await;
        let events = events_until(
            &mut ws,
            "conversation.item.input_audio_transcription.completed",
        )
        .await;

        // Assert
        let vad: Vec<Value> = events
            .iter()
            .filter(|e| e["type"].as_str().is_some_and(|t| t.contains(".speech_")))
            .cloned()
            .collect();
        assert_eq!(
            types(&vad),
            [
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped"
            ]
        );
        let hello_ms = HELLO.len() as u64 / ULAW_BYTES_PER_MS;
        let end_ms = vad[1]["audio_end_ms"].as_u64().expect("audio_end_ms");
        assert!(
            end_ms > hello_ms && end_ms <= hello_ms + 700,
            "speech stops after the words: {end_ms} vs {hello_ms}"
        );
        assert_eq!(vad[0]["item_id"], vad[1]["item_id"]);
    }

    #[tokio::test]
    async fn the_interrupt_fixture_is_one_caller_turn_too() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        append_audio(&mut ws, INTERRUPT).await;
        append_audio(&mut ws, &[ULAW_SILENCE; 8 * 700]).await;
        send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
        let events = events_until(&mut ws, "input_audio_buffer.cleared").await;

        // Assert
        let starts = events
            .iter()
            .filter(|e| e["type"] == "input_audio_buffer.speech_started")
            .count();
        let stops = events
            .iter()
            .filter(|e| e["type"] == "input_audio_buffer.speech_stopped")
            .count();
        assert_eq!((starts, stops), (1, 1));
    }

    #[tokio::test]
    async fn silence_triggers_no_speech_events() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        append_audio(&mut ws, &[ULAW_SILENCE; 8 * 2000]).await;
        send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
        let events = events_until(&mut ws, "input_audio_buffer.cleared").await;

        // Assert
        assert_eq!(types(&events), ["input_audio_buffer.cleared"]);
    }

    #[tokio::test]
    async fn a_caller_turn_gets_its_scripted_transcript_and_a_response() {
        // Arrange
        let script = Script {
            caller_transcripts: vec!["Book a table.".into()],
            ..speak_script(300)
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        append_audio(&mut ws, HELLO).await;
        append_audio(&mut ws, &[ULAW_SILENCE; 8 * 600]).await;
        let events = response_events(&mut ws).await;

        // Assert
        let transcript = events
            .iter()
            .find(|e| e["type"] == "conversation.item.input_audio_transcription.completed");
        assert_eq!(
            transcript.expect("a transcription event")["transcript"],
            "Book a table."
        );
        assert_eq!(
            events.last().expect("response.done")["response"]["status"],
            "completed"
        );
    }

    #[tokio::test]
    async fn a_response_streams_deltas_totalling_its_audio_ms() {
        // Arrange
        let fake = FakeRealtime::start(speak_script(1050)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        send(&mut ws, json!({"type": "response.create"})).await;
        let events = response_events(&mut ws).await;

        // Assert
        assert_eq!(delta_bytes(&events), 1050 * 8);
        let deltas = events
            .iter()
            .filter(|e| e["type"] == "response.output_audio.delta")
            .count();
        assert_eq!(deltas, 11, "ten 100 ms deltas and a 50 ms one");
        let done = events.last().expect("response.done");
        assert_eq!(done["response"]["status"], "completed");
        let item_id = done["response"]["output"][0]["id"]
            .as_str()
            .expect("an output item");
        assert_eq!(fake.audio_sent_ms(item_id), Some(1050));
        let transcript = events
            .iter()
            .find(|e| e["type"] == "response.output_audio_transcript.done")
            .expect("transcript");
        assert_eq!(transcript["transcript"], "A table for four.");
    }

    #[tokio::test]
    async fn truncating_past_the_produced_audio_is_rejected_with_the_real_message() {
        // Arrange
        let fake = FakeRealtime::start(speak_script(1000)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let events = response_events(&mut ws).await;
        let item_id = events.last().expect("done")["response"]["output"][0]["id"].clone();

        // Act
        let truncate = json!({"type": "conversation.item.truncate", "event_id": "evt_1", "item_id": item_id,
                              "content_index": 0, "audio_end_ms": 1500});
        send(&mut ws, truncate).await;
        let error = events_until(&mut ws, "error")
            .await
            .pop()
            .expect("an error");

        // Assert
        assert_eq!(
            error["error"]["message"],
            "Audio content of 1000ms is already shorter than 1500ms"
        );
        assert_eq!(error["error"]["code"], "invalid_value");
        assert_eq!(error["error"]["event_id"], "evt_1");
        assert_eq!(fake.errors_sent(), vec![error]);
    }

    #[tokio::test]
    async fn truncating_within_the_produced_audio_succeeds_and_shortens_the_item() {
        // Arrange
        let fake = FakeRealtime::start(speak_script(1000)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let events = response_events(&mut ws).await;
        let item_id = events.last().expect("done")["response"]["output"][0]["id"].clone();

        // Act
        let truncate = |ms: u64| json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": ms});
        send(&mut ws, truncate(400)).await;
        let truncated = next_event(&mut ws).await;
        send(&mut ws, truncate(600)).await;
        let second = next_event(&mut ws).await;

        // Assert
        assert_eq!(truncated["type"], "conversation.item.truncated");
        assert_eq!(truncated["audio_end_ms"], 400);
        assert_eq!(
            second["error"]["message"],
            "Audio content of 400ms is already shorter than 600ms"
        );
    }

    #[tokio::test]
    async fn truncating_an_unknown_or_user_item_is_rejected() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        let item = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]});
        send(
            &mut ws,
            json!({"type": "conversation.item.create", "item": item}),
        )
        .await;
        let added = next_event(&mut ws).await;
        let _done = next_event(&mut ws).await;

        // Act
        let truncate = |id: &Value| json!({"type": "conversation.item.truncate", "item_id": id, "content_index": 0, "audio_end_ms": 0});
        send(&mut ws, truncate(&added["item"]["id"])).await;
        let user = next_event(&mut ws).await;
        send(&mut ws, truncate(&json!("item_nope"))).await;
        let unknown = next_event(&mut ws).await;

        // Assert
        assert_eq!(user["error"]["code"], "unsupported_content_type");
        assert_eq!(unknown["error"]["code"], "invalid_value");
        assert_eq!(unknown["error"]["param"], "item_id");
    }

    #[tokio::test]
    async fn cancel_stops_the_deltas_at_once() {
        // Arrange: 5 s of audio at 2x real time, so cancelling after the first delta leaves most of it unsent.
        let script = Script {
            speed_up: 2.0,
            response_delay: Duration::ZERO,
            ..speak_script(5000)
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let mut events = events_until(&mut ws, "response.output_audio.delta").await;

        // Act
        send(&mut ws, json!({"type": "response.cancel"})).await;
        events.extend(response_events(&mut ws).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
        let after = events_until(&mut ws, "input_audio_buffer.cleared").await;

        // Assert
        let done = events.last().expect("response.done");
        assert_eq!(done["response"]["status"], "cancelled");
        assert_eq!(
            done["response"]["status_details"]["reason"],
            "client_cancelled"
        );
        assert_eq!(done["response"]["output"][0]["status"], "incomplete");
        assert!(
            delta_bytes(&events) < 5000 * 8 / 2,
            "most of the audio was never sent"
        );
        assert_eq!(
            types(&after),
            ["input_audio_buffer.cleared"],
            "no delta follows the cancellation"
        );
    }

    #[tokio::test]
    async fn cancel_with_no_active_response_is_rejected() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        send(&mut ws, json!({"type": "response.cancel"})).await;
        let error = next_event(&mut ws).await;

        // Assert
        assert_eq!(error["error"]["code"], "response_cancel_not_active");
        assert_eq!(fake.error_codes_sent(), ["response_cancel_not_active"]);
    }

    #[tokio::test]
    async fn response_create_during_a_response_is_rejected() {
        // Arrange
        let fake = FakeRealtime::start(speak_script(2000)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let created = next_event(&mut ws).await;

        // Act
        send(&mut ws, json!({"type": "response.create"})).await;
        let events = events_until(&mut ws, "error").await;

        // Assert
        let error = events.last().expect("an error");
        assert_eq!(
            error["error"]["code"],
            "conversation_already_has_active_response"
        );
        let id = created["response"]["id"].as_str().expect("response id");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(id))
        );
    }

    #[tokio::test]
    async fn speech_during_a_response_cancels_it_with_turn_detected() {
        // Arrange
        let script = Script {
            speed_up: 1.0,
            response_delay: Duration::ZERO,
            ..speak_script(5000)
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let _ = events_until(&mut ws, "response.output_audio.delta").await;

        // Act
        append_audio(&mut ws, INTERRUPT).await;
        let events = response_events(&mut ws).await;

        // Assert
        let started = events
            .iter()
            .position(|e| e["type"] == "input_audio_buffer.speech_started");
        assert!(
            started.is_some(),
            "speech_started precedes the cancellation: {:?}",
            types(&events)
        );
        let done = events.last().expect("response.done");
        assert_eq!(done["response"]["status"], "cancelled");
        assert_eq!(
            done["response"]["status_details"]["reason"],
            "turn_detected"
        );
    }

    #[tokio::test]
    async fn with_an_interrupt_delay_a_prompt_client_cancel_wins() {
        // Arrange
        let script = Script {
            speed_up: 1.0,
            response_delay: Duration::ZERO,
            interrupt_delay: Duration::from_millis(500),
            ..speak_script(5000)
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let _ = events_until(&mut ws, "response.output_audio.delta").await;
        append_audio(&mut ws, INTERRUPT).await;
        let _ = events_until(&mut ws, "input_audio_buffer.speech_started").await;

        // Act
        send(&mut ws, json!({"type": "response.cancel"})).await;
        let done = response_events(&mut ws).await.pop().expect("response.done");

        // Assert
        assert_eq!(
            done["response"]["status_details"]["reason"],
            "client_cancelled"
        );
        assert!(fake.errors_sent().is_empty());
    }

    /// A script whose deltas are 10 s apart, so that none but the first is due while a test cancels the response.
    fn slow_speak_script(audio_ms: u64, late_deltas_after_cancel: u32) -> Script {
        Script {
            response_delay: Duration::ZERO,
            speed_up: 0.01,
            late_deltas_after_cancel,
            ..speak_script(audio_ms)
        }
    }

    #[tokio::test]
    async fn a_cancel_is_followed_by_the_late_deltas_of_the_cancelled_response_then_its_cancellation()
     {
        // Arrange
        let fake = FakeRealtime::start(slow_speak_script(5000, 3)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let first = events_until(&mut ws, "response.output_audio.delta")
            .await
            .pop()
            .expect("the first delta");

        // Act
        send(&mut ws, json!({"type": "response.cancel"})).await;
        let events = response_events(&mut ws).await;

        // Assert
        let kinds = types(&events);
        assert_eq!(
            kinds[..4],
            [
                "response.output_audio.delta",
                "response.output_audio.delta",
                "response.output_audio.delta",
                "response.output_audio_transcript.done"
            ],
            "{kinds:?}"
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "response.output_audio.delta")
                .count(),
            3
        );
        for late in &events[..3] {
            assert_eq!(late["response_id"], first["response_id"]);
            assert_eq!(late["item_id"], first["item_id"]);
        }
        assert_eq!(delta_bytes(&events), 3 * 100 * 8, "normal-sized deltas");
        let done = events.last().expect("response.done");
        assert_eq!(done["response"]["status"], "cancelled");
        let item_id = first["item_id"].as_str().expect("item_id");
        assert_eq!(fake.audio_sent_ms(item_id), Some(400));
    }

    #[tokio::test]
    async fn late_deltas_stop_at_the_end_of_the_scripted_audio() {
        // Arrange
        let fake = FakeRealtime::start(slow_speak_script(250, 5)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let _ = events_until(&mut ws, "response.output_audio.delta").await;

        // Act
        send(&mut ws, json!({"type": "response.cancel"})).await;
        let events = response_events(&mut ws).await;

        // Assert
        assert_eq!(delta_bytes(&events), 150 * 8, "100 ms then the last 50 ms");
        assert_eq!(
            events.last().expect("response.done")["response"]["status"],
            "cancelled"
        );
    }

    #[tokio::test]
    async fn a_vad_interruption_also_sends_the_late_deltas_first() {
        // Arrange
        let fake = FakeRealtime::start(slow_speak_script(5000, 2)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let _ = events_until(&mut ws, "response.output_audio.delta").await;

        // Act
        append_audio(&mut ws, INTERRUPT).await;
        let events = response_events(&mut ws).await;

        // Assert
        let started = events
            .iter()
            .position(|e| e["type"] == "input_audio_buffer.speech_started")
            .expect("speech_started");
        assert_eq!(
            types(&events)[started + 1..started + 4],
            [
                "response.output_audio.delta",
                "response.output_audio.delta",
                "response.output_audio_transcript.done"
            ]
        );
        let done = events.last().expect("response.done");
        assert_eq!(
            done["response"]["status_details"]["reason"],
            "turn_detected"
        );
    }

    #[tokio::test]
    async fn without_late_deltas_a_cancel_stops_the_audio_at_once() {
        // Arrange
        let fake = FakeRealtime::start(slow_speak_script(5000, 0)).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let _ = events_until(&mut ws, "response.output_audio.delta").await;

        // Act
        send(&mut ws, json!({"type": "response.cancel"})).await;
        let events = response_events(&mut ws).await;

        // Assert
        assert_eq!(types(&events)[0], "response.output_audio_transcript.done");
        assert_eq!(delta_bytes(&events), 0);
    }

    #[tokio::test]
    async fn a_tool_call_is_followed_by_the_next_response_after_its_output_and_response_create() {
        // Arrange
        let script = Script {
            responses: vec![
                ScriptedResponse::call_tool("end_call", "{}"),
                ScriptedResponse::speak(200, "Goodbye."),
            ],
            ..Script::default()
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let first = response_events(&mut ws).await;
        let call = first
            .iter()
            .find(|e| e["type"] == "response.function_call_arguments.done")
            .expect("a call")
            .clone();

        // Act
        let output = json!({"type": "function_call_output", "call_id": call["call_id"], "output": "{\"ok\":true}"});
        send(
            &mut ws,
            json!({"type": "conversation.item.create", "item": output}),
        )
        .await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let second = response_events(&mut ws).await;

        // Assert
        assert_eq!(call["name"], "end_call");
        assert_eq!(call["arguments"], "{}");
        assert_eq!(
            types(&second)[..2],
            ["conversation.item.added", "conversation.item.done"]
        );
        let transcript = second
            .iter()
            .find(|e| e["type"] == "response.output_audio_transcript.done")
            .expect("speech");
        assert_eq!(transcript["transcript"], "Goodbye.");
    }

    #[tokio::test]
    async fn an_exhausted_script_answers_with_the_fallback_response() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        send(&mut ws, json!({"type": "response.create"})).await;
        let events = response_events(&mut ws).await;

        // Assert
        assert_eq!(delta_bytes(&events), 500 * 8);
    }

    #[tokio::test]
    async fn session_update_is_answered_with_the_merged_session_and_recorded() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        let update = json!({"type": "realtime", "instructions": "Be brief.",
                            "audio": {"output": {"voice": "marin"}}});

        // Act
        send(
            &mut ws,
            json!({"type": "session.update", "session": update}),
        )
        .await;
        let updated = next_event(&mut ws).await;

        // Assert
        assert_eq!(updated["type"], "session.updated");
        assert_eq!(updated["session"]["instructions"], "Be brief.");
        assert_eq!(updated["session"]["audio"]["output"]["voice"], "marin");
        assert_eq!(
            updated["session"]["audio"]["output"]["speed"], 1.0,
            "untouched keys survive the merge"
        );
        assert_eq!(fake.last_session(), Some(update));
        assert_eq!(fake.connections(), 1);
    }

    #[tokio::test]
    async fn a_beta_session_update_is_rejected() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;

        // Act
        send(
            &mut ws,
            json!({"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}}),
        )
        .await;
        let missing_type = next_event(&mut ws).await;
        send(
            &mut ws,
            json!({"type": "session.update", "session": {"modalities": ["audio"]}}),
        )
        .await;
        let unknown = next_event(&mut ws).await;

        // Assert
        assert_eq!(missing_type["error"]["code"], "unknown_parameter");
        assert_eq!(missing_type["error"]["param"], "session.input_audio_format");
        assert_eq!(unknown["error"]["param"], "session.modalities");
    }

    #[tokio::test]
    async fn a_session_update_without_session_type_is_rejected() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;

        // Act
        send(
            &mut ws,
            json!({"type": "session.update", "session": {"instructions": "Hi"}}),
        )
        .await;
        let error = next_event(&mut ws).await;

        // Assert
        assert_eq!(error["error"]["param"], "session.type");
    }

    #[tokio::test]
    async fn bad_base64_unknown_types_and_malformed_json_get_error_events() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;

        // Act
        send(
            &mut ws,
            json!({"type": "input_audio_buffer.append", "audio": "not base64!"}),
        )
        .await;
        let bad_audio = next_event(&mut ws).await;
        send(
            &mut ws,
            json!({"type": "response.audio.delta", "delta": ""}),
        )
        .await;
        let unknown = next_event(&mut ws).await;
        ws.send(Message::text("{not json")).await.expect("sending");
        let malformed = next_event(&mut ws).await;

        // Assert
        assert_eq!(bad_audio["error"]["param"], "audio");
        assert_eq!(unknown["error"]["code"], "invalid_value");
        assert!(
            unknown["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Invalid value: 'response.audio.delta'"))
        );
        assert_eq!(malformed["error"]["code"], "invalid_json");
        assert_eq!(
            fake.error_codes_sent(),
            ["invalid_value", "invalid_value", "invalid_json"]
        );
        assert_eq!(fake.client_events()[2], Value::String("{not json".into()));
    }

    #[tokio::test]
    async fn the_socket_closes_the_scripted_time_after_session_update() {
        // Arrange
        let script = Script {
            close_after: Some(Duration::from_millis(100)),
            close_code: 1001,
            ..Script::default()
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;

        // Act
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close in time");

        // Assert
        match message {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_scripted_close_is_recorded_as_the_connection_closing() {
        // Arrange
        let script = Script {
            close_after: Some(Duration::from_millis(100)),
            ..Script::default()
        };
        let fake = FakeRealtime::start(script).await;
        let mut ws = connect(&fake).await;
        let updated_at = std::time::Instant::now();
        session_update(&mut ws).await;
        let open_before = fake.connection_closed_at(0);

        // Act
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close in time");
        let close_seen_at = std::time::Instant::now();
        let closed_at = fake.wait_for_connection_closed(0, WAIT).await;

        // Assert
        assert!(
            matches!(message, Some(Ok(Message::Close(_)))),
            "{message:?}"
        );
        assert_eq!(open_before, None);
        let closed_at = closed_at.expect("the scripted close is recorded");
        assert!(closed_at >= updated_at + Duration::from_millis(100));
        assert!(
            closed_at <= close_seen_at,
            "recorded before the close frame went out"
        );
    }

    #[tokio::test]
    async fn a_client_close_frame_is_recorded_promptly_for_that_connection_only() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let _first = connect(&fake).await;
        let mut second = connect(&fake).await;
        session_update(&mut second).await;

        // Act
        let closing_at = std::time::Instant::now();
        second.close(None).await.expect("sending a close frame");
        let closed_at = fake.wait_for_connection_closed(1, WAIT).await;

        // Assert
        let closed_at = closed_at.expect("the client's close is recorded");
        assert!(
            closed_at >= closing_at && closed_at - closing_at < Duration::from_millis(500),
            "recorded {:?} after the close was sent",
            closed_at.saturating_duration_since(closing_at)
        );
        assert_eq!(
            fake.connection_closed_at(0),
            None,
            "the other connection is still open"
        );
        assert_eq!(fake.connection_closed_at(2), None, "no such connection");
    }

    #[tokio::test]
    async fn a_client_close_frame_gets_the_close_reply() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;

        // Act
        ws.close(None).await.expect("sending a close frame");
        let reply = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the close handshake completes in time");

        // Assert
        assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
    }

    #[tokio::test]
    async fn a_client_socket_dropped_without_a_close_frame_is_recorded_as_closed() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let ws = connect(&fake).await;

        // Act
        drop(ws);
        let closed_at = fake.wait_for_connection_closed(0, WAIT).await;

        // Assert
        assert!(closed_at.is_some());
    }

    #[tokio::test]
    async fn waiting_for_an_open_connection_to_close_times_out_with_none() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let _ws = connect(&fake).await;

        // Act
        let closed_at = fake
            .wait_for_connection_closed(0, Duration::from_millis(50))
            .await;

        // Assert
        assert_eq!(closed_at, None);
    }

    #[tokio::test]
    async fn upgrades_are_recorded_and_bad_ones_refused() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let no_auth = format!("{}?model=m", fake.url());
        let mut beta = no_auth.clone().into_client_request().expect("valid URL");
        beta.headers_mut()
            .insert("authorization", "Bearer sk".parse().expect("header"));
        beta.headers_mut()
            .insert("openai-beta", "realtime=v1".parse().expect("header"));

        // Act
        let unauthenticated = tokio_tungstenite::connect_async(no_auth).await;
        let beta_header = tokio_tungstenite::connect_async(beta).await;
        let _ws = connect(&fake).await;

        // Assert
        assert!(unauthenticated.is_err() && beta_header.is_err());
        let upgrades = fake.upgrade_requests();
        assert_eq!(
            upgrades.iter().map(|u| u.accepted).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(
            upgrades[2].path_and_query,
            "/v1/realtime?model=gpt-realtime-2.1"
        );
        let headers = &fake.request_headers()[2];
        assert!(headers.contains(&("authorization".to_owned(), "Bearer sk-test".to_owned())));
        assert_eq!(fake.connections(), 1);
    }

    #[tokio::test]
    async fn connections_are_independent_sessions_each_playing_the_script() {
        // Arrange
        let fake = FakeRealtime::start(speak_script(300)).await;
        let mut first = connect(&fake).await;
        let mut second = connect(&fake).await;
        session_update(&mut first).await;
        session_update(&mut second).await;

        // Act
        send(&mut first, json!({"type": "response.create"})).await;
        send(&mut second, json!({"type": "response.create"})).await;
        let a = response_events(&mut first).await;
        let b = response_events(&mut second).await;

        // Assert
        assert_eq!((delta_bytes(&a), delta_bytes(&b)), (300 * 8, 300 * 8));
        assert_eq!(fake.connections(), 2);
        assert_eq!(fake.client_events_of_connection(1).len(), 2);
    }

    #[tokio::test]
    async fn wait_for_event_returns_a_client_event_once_it_arrives() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;

        // Act
        let waiter = fake.wait_for_event("input_audio_buffer.clear", WAIT);
        let sender = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
        };
        let (found, ()) = tokio::join!(waiter, sender);
        let absent = fake
            .wait_for_event("response.cancel", Duration::from_millis(50))
            .await;

        // Assert
        assert_eq!(
            found.expect("the clear event")["type"],
            "input_audio_buffer.clear"
        );
        assert!(absent.is_none());
    }

    #[tokio::test]
    async fn dump_jsonl_appends_one_line_per_client_event() {
        // Arrange
        let fake = FakeRealtime::start(Script::default()).await;
        let mut ws = connect(&fake).await;
        session_update(&mut ws).await;
        let path = std::env::temp_dir().join(format!("fake-realtime-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);

        // Act
        fake.dump_jsonl(&path);
        fake.dump_jsonl(&path);

        // Assert
        let text = std::fs::read_to_string(&path).expect("the dump exists");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(types(&lines), ["session.update", "session.update"]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn conformance_dumps_go_to_a_per_scenario_file_in_the_events_dir_when_it_is_set() {
        let path = conformance_path(
            Some("/tmp/ev".into()),
            Some("/tmp/one.jsonl".into()),
            "barge in/2",
        );
        assert_eq!(path, Path::new("/tmp/ev/barge_in_2.jsonl"));
    }

    #[test]
    fn conformance_dumps_go_to_the_events_file_or_the_default_without_a_dir() {
        let file = conformance_path(None, Some("/tmp/one.jsonl".into()), "any");
        let default = conformance_path(None, None, "any");
        assert_eq!(file, Path::new("/tmp/one.jsonl"));
        assert!(default.ends_with("target/conformance/realtime-client-events.jsonl"));
    }

    #[test]
    fn ulaw_silence_is_below_and_the_tone_above_the_speech_threshold() {
        assert_eq!(frame_rms(&[ULAW_SILENCE; 160]), 0.0);
        assert!(frame_rms(&tone(0, 20)) >= SPEECH_RMS_THRESHOLD);
    }

    #[test]
    fn the_fixtures_are_real_speech_by_the_fakes_own_measure() {
        for fixture in [HELLO, INTERRUPT] {
            let speech_frames = fixture
                .chunks(160)
                .filter(|f| frame_rms(f) >= SPEECH_RMS_THRESHOLD)
                .count();
            assert!(
                speech_frames * 2 > fixture.len() / 160,
                "most frames are speech"
            );
        }
    }

    proptest! {
        #[test]
        fn ulaw_encoding_round_trips_within_its_quantisation_step(sample in i16::MIN..=i16::MAX) {
            let decoded = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let original = i32::from(sample).clamp(-32635, 32635);
            // μ-law's step doubles per segment; the error is at most half a step of the sample's segment.
            let tolerance = (original.abs() / 16).max(8);
            prop_assert!((decoded - original).abs() <= tolerance, "{sample} -> {decoded}");
        }

        #[test]
        fn every_ulaw_byte_survives_decode_then_encode(byte in any::<u8>()) {
            let expected = if byte == 0x7F { 0xFF } else { byte }; // -0 and +0 both encode as +0
            prop_assert_eq!(linear_to_ulaw(ulaw_to_linear(byte)), expected);
        }
    }
}
