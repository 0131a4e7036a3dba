//! The fake's Realtime session state machine: the [`Script`] it follows, the session it keeps (`session.update`
//! merged key by key), the conversation items, the response in flight and its cancellation, and the errors the real
//! API gives. No socket: [`super::server`] feeds it client events and sends what it returns.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::record::*;
use super::vad::*;

/// Top-level `session` keys the GA `session.update` accepts (`RealtimeSessionCreateRequest` in the SDK).
pub(super) const GA_SESSION_KEYS: &[&str] = &[
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
pub(super) const CLIENT_EVENT_TYPES: &[&str] = &[
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
    /// Once this many connections were accepted, every further upgrade is refused with HTTP 503 and OpenAI's
    /// error body (`server_error`): the API unreachable for a session reopened mid-call. `None` accepts all.
    pub accept_connections: Option<usize>,
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
            accept_connections: None,
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

/// What an item in the conversation is, as far as truncation cares.
#[derive(Debug, Clone)]
pub(super) enum ItemKind {
    /// An assistant audio message and the ms of audio it holds (sent, possibly truncated since).
    AssistantAudio { audio_ms: u64 },
    /// Anything else (user message, function call, function call output, system message).
    Other,
}

/// Where the active response is.
#[derive(Debug)]
pub(super) enum Phase {
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
pub(super) struct ActiveResponse {
    id: String,
    plan: ScriptedResponse,
    phase: Phase,
    /// When server VAD will cancel this response (speech started with `interrupt_response`).
    vad_cancel_at: Option<Instant>,
}

/// One Realtime session: the synchronous state machine behind a connection. It queues outgoing events; the
/// connection loop sends them and asks for the next timer deadline.
pub(super) struct Session {
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
    pub(super) close_requested: bool,
    /// Whether a `session.update` was applied on this connection (the error flood follows the first).
    updated_once: bool,
    outgoing: Vec<Value>,
}

impl Session {
    pub(super) fn new(shared: Arc<Shared>, model: &str) -> Self {
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

    pub(super) fn take_outgoing(&mut self) -> Vec<Value> {
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
    pub(super) fn error(
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
    pub(super) fn next_deadline(&self) -> Option<Instant> {
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
    pub(super) fn tick(&mut self, now: Instant) {
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

    pub(super) fn handle_text(&mut self, text: &str, now: Instant) {
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
pub(super) fn merge(target: &mut Value, update: &Value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_realtime::test_client::*;
    use crate::fake_realtime::*;
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;

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
}
