//! One Realtime session of the local stand-in for OpenAI, as a plain state machine: client events and the passing
//! of time in, server events (JSON text) and timeline notes out. No socket and no clock of its own
//! ([`super::standin`] moves the messages).
//!
//! It speaks the GA subset the relay uses (<https://platform.openai.com/docs/api-reference/realtime-client-events>,
//! <https://platform.openai.com/docs/api-reference/realtime-server-events>):
//! - `session.update` → `session.updated` (the session as sent); its server VAD settings (`create_response`,
//!   `interrupt_response`, `silence_duration_ms`, `prefix_padding_ms`, `null` for off) and input transcription are
//!   obeyed;
//! - `input_audio_buffer.append` → server VAD by energy on the decoded μ-law (see [`EnergyVad`]):
//!   `input_audio_buffer.speech_started` / `speech_stopped` / `committed`, the caller's (scripted) transcript, then a
//!   response when `create_response` is on; speech during a response cancels it when `interrupt_response` is on
//!   (reason `turn_detected`);
//! - `response.create` → `response.created`, then the scripted speech streamed as `response.output_audio.delta`
//!   events of [`DELTA_MS`] each, faster than real time as the real API does, with its transcript, the `end_call`
//!   function call when scripted, and `response.done` with its status;
//! - `response.cancel`, `conversation.item.truncate` (refused past the audio produced, with the real API's message),
//!   `conversation.item.create`, `input_audio_buffer.clear`/`commit`; errors as `error{error{type, code, message,
//!   param, event_id}}`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::script::{ASSISTANT_RESPONSES, CALLER_TRANSCRIPTS, ScriptedResponse};
use crate::simulate::audio::{MULAW_BYTES_PER_MS, mulaw_decode};

/// Audio per `response.output_audio.delta`, in ms.
pub const DELTA_MS: u64 = 100;
/// Time between two deltas: half of [`DELTA_MS`], so speech is produced at twice real time.
pub const DELTA_INTERVAL: Duration = Duration::from_millis(DELTA_MS / 2);
/// A 20 ms frame is speech when the RMS of its decoded 16-bit samples is at least this (about -42 dBFS).
pub const SPEECH_RMS: f64 = 250.0;
/// Consecutive speech before `speech_started`, in ms.
pub const SPEECH_START_MS: u64 = 60;
/// One VAD frame, in ms.
const FRAME_MS: u64 = 20;

/// What the session produced: a server event to send, or a line for the demo's timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A server event, JSON text.
    Send(String),
    /// What the stand-in did, in words, for the timeline.
    Note(String),
}

/// Server VAD settings from `session.audio.input.turn_detection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TurnDetection {
    /// `false` when `turn_detection` is `null`.
    enabled: bool,
    /// Start a response when the caller stops.
    create_response: bool,
    /// Cancel the response in flight when the caller starts.
    interrupt_response: bool,
    /// Silence that ends a turn, ms.
    silence_duration_ms: u64,
    /// Audio kept before the detected start, ms.
    prefix_padding_ms: u64,
}

impl Default for TurnDetection {
    /// The API's defaults: on, both flags on, 500 ms silence, 300 ms padding.
    fn default() -> Self {
        Self {
            enabled: true,
            create_response: true,
            interrupt_response: true,
            silence_duration_ms: 500,
            prefix_padding_ms: 300,
        }
    }
}

/// A VAD transition, with its position in the session's input audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech started at this position of the input audio, ms (before the prefix padding is taken off).
    Started(u64),
    /// Speech ended at this position, ms.
    Stopped(u64),
}

/// Voice activity detection by energy over 20 ms frames of μ-law.
#[derive(Debug, Default)]
pub struct EnergyVad {
    /// Bytes of an unfinished frame.
    carry: Vec<u8>,
    /// Frames seen since the session started.
    frames: u64,
    /// Consecutive speech while silent, ms, and where it began.
    speech_run: Option<(u64, u64)>,
    /// While in speech: the silence run so far, ms.
    in_speech: Option<u64>,
}

impl EnergyVad {
    /// Feeds μ-law bytes; returns the transitions, in order.
    fn push(&mut self, ulaw: &[u8], turn: TurnDetection) -> Vec<VadEvent> {
        let frame_bytes = (FRAME_MS * MULAW_BYTES_PER_MS) as usize;
        self.carry.extend_from_slice(ulaw);
        let whole = self.carry.len() / frame_bytes * frame_bytes;
        let frames: Vec<u8> = self.carry.drain(..whole).collect();
        let mut events = Vec::new();
        for frame in frames.chunks_exact(frame_bytes) {
            let start_ms = self.frames * FRAME_MS;
            self.frames += 1;
            if !turn.enabled {
                continue;
            }
            let speech = rms(frame) >= SPEECH_RMS;
            match (self.in_speech, speech) {
                (None, true) => {
                    let (run_ms, run_start) = self.speech_run.unwrap_or((0, start_ms));
                    let run_ms = run_ms + FRAME_MS;
                    if run_ms >= SPEECH_START_MS {
                        self.speech_run = None;
                        self.in_speech = Some(0);
                        events.push(VadEvent::Started(run_start));
                    } else {
                        self.speech_run = Some((run_ms, run_start));
                    }
                }
                (None, false) => self.speech_run = None,
                (Some(_), true) => self.in_speech = Some(0),
                (Some(silence_ms), false) => {
                    let silence_ms = silence_ms + FRAME_MS;
                    if silence_ms >= turn.silence_duration_ms {
                        self.in_speech = None;
                        events.push(VadEvent::Stopped(start_ms + FRAME_MS));
                    } else {
                        self.in_speech = Some(silence_ms);
                    }
                }
            }
        }
        events
    }

    /// Forgets the speech in progress (`input_audio_buffer.clear`).
    fn reset(&mut self) {
        self.speech_run = None;
        self.in_speech = None;
    }
}

/// RMS of a μ-law frame's decoded 16-bit samples.
pub fn rms(ulaw: &[u8]) -> f64 {
    if ulaw.is_empty() {
        return 0.0;
    }
    let sum: f64 = ulaw
        .iter()
        .map(|&b| f64::from(mulaw_decode(b)).powi(2))
        .sum();
    (sum / ulaw.len() as f64).sqrt()
}

/// The response being produced.
#[derive(Debug)]
struct Active {
    /// `resp_...`.
    id: String,
    /// The assistant message item (`item_...`).
    item_id: String,
    /// What it says.
    script: ScriptedResponse,
    /// μ-law bytes produced so far.
    sent_bytes: usize,
    /// When the next delta is due.
    next_delta_at: Instant,
}

/// One stand-in Realtime session. See the module docs.
#[derive(Debug)]
pub struct StandInSession {
    /// Server VAD settings.
    turn: TurnDetection,
    /// Whether caller turns get a transcript (`audio.input.transcription` set).
    transcription: bool,
    /// Whether the session offers `end_call`, and whether it takes an `outcome`.
    end_call_tool: Option<bool>,
    /// The detector.
    vad: EnergyVad,
    /// The user item of the speech in progress, and where its speech started in the input audio (ms).
    user_item: Option<(String, u64)>,
    /// Responses started so far (the index into the script).
    responses_started: usize,
    /// Caller turns transcribed so far.
    caller_turns: usize,
    /// The response in flight.
    active: Option<Active>,
    /// Ms of audio produced per assistant item, for truncation checks.
    item_audio_ms: Vec<(String, u64)>,
    /// For fresh ids.
    next_id: u64,
}

impl Default for StandInSession {
    fn default() -> Self {
        Self::new()
    }
}

impl StandInSession {
    /// A session with the API's default turn detection, before any `session.update`.
    pub fn new() -> Self {
        Self {
            turn: TurnDetection::default(),
            transcription: false,
            end_call_tool: None,
            vad: EnergyVad::default(),
            user_item: None,
            responses_started: 0,
            caller_turns: 0,
            active: None,
            item_audio_ms: Vec::new(),
            next_id: 0,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_standin{:04}", self.next_id)
    }

    /// The events a new connection starts with: `session.created`.
    pub fn on_open(&mut self) -> Vec<Output> {
        vec![self.event(
            "session.created",
            json!({"session": {"type": "realtime", "output_modalities": ["audio"]}}),
        )]
    }

    /// When [`Self::on_tick`] next has something to do (the next delta), if anything.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.active.as_ref().map(|a| a.next_delta_at)
    }

    /// A client event (JSON text) arrived at `now`.
    pub fn on_client_event(&mut self, text: &str, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            out.extend(self.error("invalid_json", "The event is not valid JSON.", None, None));
            return out;
        };
        let event_id = event["event_id"].as_str().map(str::to_owned);
        let kind = event["type"].as_str().unwrap_or_default();
        match kind {
            "session.update" => self.on_session_update(&event["session"], &mut out),
            "input_audio_buffer.append" => {
                match event["audio"].as_str().map(|a| BASE64.decode(a)) {
                    Some(Ok(audio)) => self.on_audio(&audio, now, &mut out),
                    _ => out.extend(self.error(
                        "invalid_value",
                        "Invalid 'audio': not base64.",
                        Some("audio"),
                        event_id,
                    )),
                }
            }
            "input_audio_buffer.clear" => {
                self.vad.reset();
                self.user_item = None;
                out.push(self.event("input_audio_buffer.cleared", json!({})));
            }
            "input_audio_buffer.commit" => {
                let item_id = self.id("item");
                out.push(self.event(
                    "input_audio_buffer.committed",
                    json!({"previous_item_id": null, "item_id": item_id}),
                ));
            }
            "conversation.item.create" => {
                let mut item = event["item"].clone();
                if item.get("id").is_none() && item.is_object() {
                    item["id"] = json!(self.id("item"));
                }
                out.push(self.event(
                    "conversation.item.added",
                    json!({"previous_item_id": null, "item": item}),
                ));
            }
            "conversation.item.truncate" => self.on_truncate(&event, event_id, &mut out),
            "response.create" => {
                if self.active.is_some() {
                    out.extend(self.error(
                        "conversation_already_has_active_response",
                        "Conversation already has an active response in progress.",
                        None,
                        event_id,
                    ));
                } else {
                    self.start_response(now, &mut out);
                }
            }
            "response.cancel" => {
                if self.active.is_some() {
                    self.cancel("client_cancelled", &mut out);
                } else {
                    out.extend(self.error(
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found",
                        None,
                        event_id,
                    ));
                    out.push(Output::Note(
                        "(a response.cancel that crosses the server VAD's own cancellation gets this error from \
                         the real API too; the relay ignores it)"
                            .to_owned(),
                    ));
                }
            }
            other => {
                let message =
                    format!("Invalid value: '{other}'. Supported values are client event types.");
                out.extend(self.error("invalid_value", &message, Some("type"), event_id));
            }
        }
        out
    }

    /// Time passed: streams the deltas due by `now`, and ends the response when its speech is all out.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(active) = self.active.as_mut() {
            if now < active.next_delta_at {
                break;
            }
            let audio = active.script.clip.audio;
            if active.sent_bytes >= audio.len() {
                self.complete(&mut out);
                break;
            }
            let end =
                (active.sent_bytes + (DELTA_MS * MULAW_BYTES_PER_MS) as usize).min(audio.len());
            let delta = BASE64.encode(&audio[active.sent_bytes..end]);
            active.sent_bytes = end;
            active.next_delta_at += DELTA_INTERVAL;
            let (response_id, item_id) = (active.id.clone(), active.item_id.clone());
            let sent_ms = end as u64 / MULAW_BYTES_PER_MS;
            self.set_item_audio(&item_id, sent_ms);
            out.push(self.event(
                "response.output_audio.delta",
                json!({"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}),
            ));
        }
        out
    }

    fn on_session_update(&mut self, session: &Value, out: &mut Vec<Output>) {
        let input = &session["audio"]["input"];
        match input.get("turn_detection") {
            Some(Value::Null) => self.turn.enabled = false,
            Some(config) => {
                let flag = |name: &str| config[name].as_bool().unwrap_or(true);
                self.turn = TurnDetection {
                    enabled: true,
                    create_response: flag("create_response"),
                    interrupt_response: flag("interrupt_response"),
                    silence_duration_ms: config["silence_duration_ms"].as_u64().unwrap_or(500),
                    prefix_padding_ms: config["prefix_padding_ms"].as_u64().unwrap_or(300),
                };
            }
            None => {}
        }
        if let Some(transcription) = input.get("transcription") {
            self.transcription = !transcription.is_null();
        }
        if let Some(tools) = session["tools"].as_array() {
            self.end_call_tool = tools
                .iter()
                .find(|tool| tool["name"] == "end_call")
                .map(|tool| tool["parameters"]["properties"].get("outcome").is_some());
        }
        out.push(Output::Note(format!(
            "session.update: server VAD {} (silence {} ms), caller transcripts {}, end_call tool {}",
            if self.turn.enabled { "on" } else { "off" },
            self.turn.silence_duration_ms,
            if self.transcription { "on" } else { "off" },
            if self.end_call_tool.is_some() { "offered" } else { "absent" },
        )));
        out.push(self.event("session.updated", json!({"session": session})));
    }

    fn on_audio(&mut self, audio: &[u8], now: Instant, out: &mut Vec<Output>) {
        for vad in self.vad.push(audio, self.turn) {
            match vad {
                VadEvent::Started(speech_ms) => {
                    let item_id = self.id("item");
                    self.user_item = Some((item_id.clone(), speech_ms));
                    out.push(Output::Note(format!(
                        "server VAD: the caller started speaking ({:.2} s into the input audio)",
                        speech_ms as f64 / 1000.0
                    )));
                    // The API counts the prefix padding in: the start of the audio kept with the turn.
                    let audio_start_ms = speech_ms.saturating_sub(self.turn.prefix_padding_ms);
                    out.push(self.event(
                        "input_audio_buffer.speech_started",
                        json!({"audio_start_ms": audio_start_ms, "item_id": item_id}),
                    ));
                    if self.turn.interrupt_response && self.active.is_some() {
                        self.cancel("turn_detected", out);
                    }
                }
                VadEvent::Stopped(audio_end_ms) => {
                    let (item_id, speech_ms) = self
                        .user_item
                        .take()
                        .unwrap_or_else(|| (self.id("item"), audio_end_ms));
                    let seconds = audio_end_ms.saturating_sub(speech_ms) as f64 / 1000.0;
                    out.push(self.event(
                        "input_audio_buffer.speech_stopped",
                        json!({"audio_end_ms": audio_end_ms, "item_id": item_id}),
                    ));
                    out.push(self.event(
                        "input_audio_buffer.committed",
                        json!({"previous_item_id": null, "item_id": item_id}),
                    ));
                    let transcript = CALLER_TRANSCRIPTS
                        .get(self.caller_turns)
                        .copied()
                        .unwrap_or("");
                    self.caller_turns += 1;
                    out.push(Output::Note(format!(
                        "server VAD: the caller stopped; scripted transcript \"{transcript}\" (the stand-in does not \
                         recognise speech)"
                    )));
                    if self.transcription {
                        out.push(self.event(
                            "conversation.item.input_audio_transcription.completed",
                            json!({"item_id": item_id, "content_index": 0, "transcript": transcript,
                                "usage": {"type": "duration", "seconds": seconds}}),
                        ));
                    }
                    if self.turn.create_response && self.active.is_none() {
                        self.start_response(now, out);
                    }
                }
            }
        }
    }

    fn on_truncate(&mut self, event: &Value, event_id: Option<String>, out: &mut Vec<Output>) {
        let item_id = event["item_id"].as_str().unwrap_or_default().to_owned();
        let audio_end_ms = event["audio_end_ms"].as_u64().unwrap_or(0);
        let Some(produced_ms) = self.item_audio(&item_id) else {
            let message = format!("Invalid value: item '{item_id}' has no assistant audio.");
            out.extend(self.error("invalid_value", &message, Some("item_id"), event_id));
            return;
        };
        if audio_end_ms > produced_ms {
            let message = format!(
                "Audio content of {produced_ms}ms is already shorter than {audio_end_ms}ms"
            );
            out.extend(self.error("invalid_value", &message, Some("audio_end_ms"), event_id));
            return;
        }
        out.push(Output::Note(format!(
            "conversation.item.truncate: the assistant's turn is cut at {audio_end_ms} ms, what the caller heard \
             ({produced_ms} ms had been produced)"
        )));
        out.push(self.event(
            "conversation.item.truncated",
            json!({"item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}),
        ));
    }

    fn start_response(&mut self, now: Instant, out: &mut Vec<Output>) {
        let script = ASSISTANT_RESPONSES
            .get(self.responses_started)
            .or(ASSISTANT_RESPONSES.last())
            .copied()
            .expect("the script has responses");
        self.responses_started += 1;
        let (id, item_id) = (self.id("resp"), self.id("item"));
        out.push(Output::Note(format!(
            "response.create: says \"{}\" ({} ms of synthesized speech){}",
            script.clip.text,
            script.clip.duration_ms(),
            if script.end_call {
                ", then calls end_call"
            } else {
                ""
            }
        )));
        out.push(self.event(
            "response.created",
            json!({"response": {"id": id, "object": "realtime.response", "status": "in_progress", "output": []}}),
        ));
        let item = json!({"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": "in_progress", "content": []});
        out.push(self.event(
            "response.output_item.added",
            json!({"response_id": id, "output_index": 0, "item": item}),
        ));
        out.push(self.event(
            "conversation.item.added",
            json!({"previous_item_id": null, "item": item}),
        ));
        out.push(self.event(
            "response.content_part.added",
            json!({"response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "audio", "transcript": ""}}),
        ));
        // The model writes the transcript ahead of the audio.
        out.push(self.event(
            "response.output_audio_transcript.delta",
            json!({"response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": script.clip.text}),
        ));
        self.active = Some(Active {
            id,
            item_id,
            script,
            sent_bytes: 0,
            next_delta_at: now,
        });
    }

    /// Closes the message item of the active response (`status` `completed` or `incomplete`).
    fn close_message(&mut self, active: &Active, status: &str, out: &mut Vec<Output>) {
        let (id, item_id, text) = (&active.id, &active.item_id, active.script.clip.text);
        let ids =
            json!({"response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0});
        let mut transcript_done = ids.clone();
        transcript_done["transcript"] = json!(text);
        out.push(self.event("response.output_audio.done", ids.clone()));
        out.push(self.event("response.output_audio_transcript.done", transcript_done));
        let mut part_done = ids;
        part_done["part"] = json!({"type": "audio", "transcript": text});
        out.push(self.event("response.content_part.done", part_done));
        let item = json!({"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
            "content": [{"type": "output_audio", "transcript": text}]});
        out.push(self.event(
            "response.output_item.done",
            json!({"response_id": id, "output_index": 0, "item": item}),
        ));
        out.push(self.event("conversation.item.done", json!({"item": item})));
    }

    /// The active response's speech is all out: close it, call `end_call` if scripted, `response.done`.
    fn complete(&mut self, out: &mut Vec<Output>) {
        let Some(active) = self.active.take() else {
            return;
        };
        self.close_message(&active, "completed", out);
        if let (true, Some(takes_outcome)) = (active.script.end_call, self.end_call_tool) {
            let (item_id, call_id) = (self.id("item"), self.id("call"));
            let arguments = if takes_outcome {
                json!({"outcome": "Table for four at seven tonight, on the terrace."}).to_string()
            } else {
                "{}".to_owned()
            };
            let item = json!({"id": item_id, "object": "realtime.item", "type": "function_call", "status": "completed",
                "name": "end_call", "call_id": call_id, "arguments": arguments});
            out.push(self.event(
                "response.output_item.added",
                json!({"response_id": active.id, "output_index": 1, "item": item}),
            ));
            out.push(self.event(
                "response.function_call_arguments.done",
                json!({"response_id": active.id, "item_id": item_id, "output_index": 1, "call_id": call_id, "name": "end_call", "arguments": arguments}),
            ));
            out.push(self.event(
                "response.output_item.done",
                json!({"response_id": active.id, "output_index": 1, "item": item}),
            ));
            out.push(Output::Note(format!(
                "the assistant calls end_call({arguments}) after its goodbye"
            )));
        }
        out.push(Output::Note(format!(
            "response.done: completed, {} ms of speech produced",
            active.sent_bytes as u64 / MULAW_BYTES_PER_MS
        )));
        out.push(self.response_done(&active.id, "completed", Value::Null));
    }

    /// Cancels the active response for `reason` (`turn_detected` or `client_cancelled`).
    fn cancel(&mut self, reason: &str, out: &mut Vec<Output>) {
        let Some(active) = self.active.take() else {
            return;
        };
        out.push(Output::Note(format!(
            "response cancelled ({reason}) after {} of {} ms of speech was produced",
            active.sent_bytes as u64 / MULAW_BYTES_PER_MS,
            active.script.clip.duration_ms()
        )));
        self.close_message(&active, "incomplete", out);
        out.push(self.response_done(
            &active.id,
            "cancelled",
            json!({"type": "cancelled", "reason": reason}),
        ));
    }

    fn response_done(&mut self, id: &str, status: &str, details: Value) -> Output {
        // The stand-in charges nothing: every count is zero.
        let usage = json!({"total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": 0, "audio_tokens": 0}});
        self.event(
            "response.done",
            json!({"response": {"id": id, "object": "realtime.response", "status": status, "status_details": details, "output": [], "usage": usage}}),
        )
    }

    fn item_audio(&self, item_id: &str) -> Option<u64> {
        self.item_audio_ms
            .iter()
            .find(|(id, _)| id == item_id)
            .map(|(_, ms)| *ms)
    }

    fn set_item_audio(&mut self, item_id: &str, ms: u64) {
        match self.item_audio_ms.iter_mut().find(|(id, _)| id == item_id) {
            Some((_, produced)) => *produced = ms,
            None => self.item_audio_ms.push((item_id.to_owned(), ms)),
        }
    }

    /// A server event of `kind` with `fields`, and a fresh `event_id`.
    fn event(&mut self, kind: &str, mut fields: Value) -> Output {
        fields["type"] = json!(kind);
        fields["event_id"] = json!(self.id("event"));
        Output::Send(fields.to_string())
    }

    /// An `error` event, after a note for the timeline.
    fn error(
        &mut self,
        code: &str,
        message: &str,
        param: Option<&str>,
        event_id: Option<String>,
    ) -> Vec<Output> {
        let note = Output::Note(format!("error {code}: {message}"));
        let event = self.event(
            "error",
            json!({"error": {"type": "invalid_request_error", "code": code, "message": message, "param": param, "event_id": event_id}}),
        );
        vec![note, event]
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
