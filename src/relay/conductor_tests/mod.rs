//! Unit tests of the [`Conductor`]: each test feeds it realistic Twilio Media Streams and OpenAI Realtime event texts
//! (the shapes of tests/fixtures/twilio and tests/fixtures/realtime) at hand-made instants, then asserts on the actions
//! it returns (every JSON frame is parsed and checked field by field) and on the call record it builds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::calls::{CallFailure, CallRecord, Direction, EndReason, Speaker};
use crate::realtime::server_events::parse_server_event;
use crate::relay::budget::{LOG_BURST, LOG_REFILL, LOGGED_TEXT_MAX_BYTES};
use crate::twilio::media::parse_twilio_event;

/// The CallSid the stream token was issued for (the one in tests/fixtures/twilio/start.json).
const CALL_SID: &str = "CA9e8d7c6b5a49382716f5e4d3c2b1a0f9";
/// The StreamSid of tests/fixtures/twilio/start.json.
const STREAM_SID: &str = "MZ0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// The response of the tests/fixtures/realtime events.
const RESPONSE_1: &str = "resp_C9xL0aQm4Zt7Vn2Ee6Rw";
const RESPONSE_2: &str = "resp_C9xM2bRn5Au8Wo3Ff7Sx";
/// The assistant item of the tests/fixtures/realtime events.
const ITEM_1: &str = "item_C9xL0bYc8Ju3Po5Hs1Kd";
const ITEM_2: &str = "item_C9xM2cZd9Kv4Qp6It2Le";
const MAX_CALL_MS: u64 = 600_000;
const FAREWELL_GRACE_MS: u64 = 2_000;
/// An idle timeout past the maximum duration: the tests that are not about idleness never meet it.
const NEVER_IDLE_MS: u64 = 2 * MAX_CALL_MS;
const GREETING: &str = "Hello, this is Ada from the Blue Door restaurant.";
/// Ten words, to check how many of them an interrupted turn keeps.
const TEN_WORDS: &str = "One two three four five six seven eight nine ten.";

const TWILIO_CONNECTED: &str = include_str!("../../../tests/fixtures/twilio/connected.json");
const TWILIO_START: &str = include_str!("../../../tests/fixtures/twilio/start.json");
const TWILIO_MEDIA: &str = include_str!("../../../tests/fixtures/twilio/media.json");
const TWILIO_DTMF: &str = include_str!("../../../tests/fixtures/twilio/dtmf.json");
const TWILIO_STOP: &str = include_str!("../../../tests/fixtures/twilio/stop.json");
const TWILIO_UNKNOWN: &str = include_str!("../../../tests/fixtures/twilio/unknown.json");
const OPENAI_AUDIO_DELTA: &str =
    include_str!("../../../tests/fixtures/realtime/response.output_audio.delta.json");
const OPENAI_END_CALL: &str =
    include_str!("../../../tests/fixtures/realtime/response.function_call_arguments.done.json");
const OPENAI_RESPONSE_DONE: &str =
    include_str!("../../../tests/fixtures/realtime/response.done.json");
const OPENAI_ERROR: &str = include_str!("../../../tests/fixtures/realtime/error.json");
const OPENAI_UNKNOWN: &str = include_str!("../../../tests/fixtures/realtime/unknown.json");
const OPENAI_RATE_LIMITS: &str =
    include_str!("../../../tests/fixtures/realtime/rate_limits.updated.json");
const OPENAI_SESSION_UPDATED: &str =
    include_str!("../../../tests/fixtures/realtime/session.updated.json");
const OPENAI_SPEECH_STOPPED: &str =
    include_str!("../../../tests/fixtures/realtime/input_audio_buffer.speech_stopped.json");
const OPENAI_OUTPUT_AUDIO_DONE: &str =
    include_str!("../../../tests/fixtures/realtime/response.output_audio.done.json");
const OPENAI_ITEM_TRUNCATED: &str =
    include_str!("../../../tests/fixtures/realtime/conversation.item.truncated.json");

fn config() -> ConductorConfig {
    ConductorConfig {
        call_sid: CALL_SID.to_owned(),
        assistant_speaks_first: false,
        greeting: GREETING.to_owned(),
        max_call_duration: Duration::from_millis(MAX_CALL_MS),
        farewell_grace: Duration::from_millis(FAREWELL_GRACE_MS),
        goodbye: GoodbyeMatcher::default(),
        stream_idle_timeout: Duration::from_millis(NEVER_IDLE_MS),
        machine: None,
    }
}

/// Base64 of `bytes` bytes of μ-law silence.
fn audio_bytes_b64(bytes: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(vec![0xFF_u8; bytes])
}

/// Base64 of `ms` of 8 kHz μ-law (8 bytes per ms).
fn audio_b64(ms: u64) -> String {
    audio_bytes_b64(usize::try_from(ms * 8).expect("test audio fits in memory"))
}

// ---- Twilio frames ----

fn start_json(call_sid: &str) -> String {
    json!({
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC5f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "streamSid": STREAM_SID,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": {"direction": "inbound"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        },
        "streamSid": STREAM_SID
    })
    .to_string()
}

fn mark_json(name: &str) -> String {
    json!({"event": "mark", "sequenceNumber": "4", "streamSid": STREAM_SID, "mark": {"name": name}})
        .to_string()
}

fn dtmf_json(digit: &str) -> String {
    json!({
        "event": "dtmf",
        "streamSid": STREAM_SID,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": digit}
    })
    .to_string()
}

// ---- OpenAI Realtime server events ----

fn response_created_json(response_id: &str) -> String {
    json!({
        "type": "response.created",
        "event_id": "event_C9xL0006gH7kTq2Ws",
        "response": {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": null,
            "output": [],
            "output_modalities": ["audio"],
            "usage": null,
            "metadata": null
        }
    })
    .to_string()
}

fn response_done_json(response_id: &str, status: &str, usage: Value) -> String {
    let status_details = match status {
        "cancelled" => json!({"type": "cancelled", "reason": "turn_detected"}),
        _ => Value::Null,
    };
    json!({
        "type": "response.done",
        "event_id": "event_C9xL0016gH7kTq2Ws",
        "response": {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": status_details,
            "output": [],
            "output_modalities": ["audio"],
            "usage": usage,
            "metadata": null
        }
    })
    .to_string()
}

fn audio_delta_json(response_id: &str, item_id: &str, delta: &str) -> String {
    json!({
        "type": "response.output_audio.delta",
        "event_id": "event_C9xL0009gH7kTq2Ws",
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": delta
    })
    .to_string()
}

fn speech_started_json() -> String {
    json!({
        "type": "input_audio_buffer.speech_started",
        "event_id": "event_C9xL0003gH7kTq2Ws",
        "audio_start_ms": 1180,
        "item_id": "item_C9xKzR1fN6Vt4Qw8Ls2Dm"
    })
    .to_string()
}

fn transcript_delta_json(response_id: &str, item_id: &str, delta: &str) -> String {
    json!({
        "type": "response.output_audio_transcript.delta",
        "event_id": "event_C9xL0011gH7kTq2Ws",
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": delta
    })
    .to_string()
}

fn transcript_done_json(response_id: &str, item_id: &str, transcript: &str) -> String {
    json!({
        "type": "response.output_audio_transcript.done",
        "event_id": "event_C9xL0012gH7kTq2Ws",
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "transcript": transcript
    })
    .to_string()
}

fn input_transcription_json(transcript: &str) -> String {
    json!({
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": "event_C9xL0013gH7kTq2Ws",
        "item_id": "item_C9xKzR1fN6Vt4Qw8Ls2Dm",
        "content_index": 0,
        "transcript": transcript,
        "logprobs": null
    })
    .to_string()
}

fn function_call_json(response_id: &str, call_id: &str, name: &str, arguments: &str) -> String {
    json!({
        "type": "response.function_call_arguments.done",
        "event_id": "event_C9xL0015gH7kTq2Ws",
        "response_id": response_id,
        "item_id": "item_C9xL3tWm2Ra9Lk6Fg0Zb",
        "output_index": 1,
        "call_id": call_id,
        "name": name,
        "arguments": arguments
    })
    .to_string()
}

fn error_json(code: &str, message: &str) -> String {
    json!({
        "type": "error",
        "event_id": "event_C9xL0018gH7kTq2Ws",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": null,
            "event_id": null
        }
    })
    .to_string()
}

// ---- Reading the actions ----

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).expect("every frame the conductor produces is JSON")
}

/// A short readable name per action: `twilio:media`, `twilio:mark g0:s0`, `openai:response.cancel`,
/// `hang_up:goodbye`.
fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|action| match action {
            Action::Twilio(text) => {
                let frame = parse_json(text);
                match frame["event"].as_str() {
                    Some("mark") => format!(
                        "twilio:mark {}",
                        frame["mark"]["name"].as_str().unwrap_or("?")
                    ),
                    Some(event) => format!("twilio:{event}"),
                    None => format!("twilio:? {text}"),
                }
            }
            Action::OpenAi(text) => {
                format!(
                    "openai:{}",
                    parse_json(text)["type"].as_str().unwrap_or("?")
                )
            }
            Action::HangUp(reason) => format!("hang_up:{reason}"),
            Action::UpdateCall(update) => format!("update_call:{update:?}"),
            Action::SayDone(_) => "say_done".to_owned(),
            Action::OpenSession => "open_session".to_owned(),
            Action::SwitchSession => "switch_session".to_owned(),
        })
        .collect()
}

/// The OpenAI-bound client events, parsed.
fn openai_events(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::OpenAi(text) => Some(parse_json(text)),
            _ => None,
        })
        .collect()
}

/// The OpenAI-bound client events of one `type`, parsed.
fn openai_events_of_type(actions: &[Action], event_type: &str) -> Vec<Value> {
    openai_events(actions)
        .into_iter()
        .filter(|event| event["type"] == event_type)
        .collect()
}

/// The Twilio-bound frames, parsed.
fn twilio_frames(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Twilio(text) => Some(parse_json(text)),
            _ => None,
        })
        .collect()
}

/// The names of the Twilio marks sent, in order.
fn mark_names(actions: &[Action]) -> Vec<String> {
    twilio_frames(actions)
        .iter()
        .filter(|frame| frame["event"] == "mark")
        .map(|frame| {
            frame["mark"]["name"]
                .as_str()
                .expect("a mark has a name")
                .to_owned()
        })
        .collect()
}

fn assistant_turns(record: &CallRecord) -> Vec<&crate::calls::Turn> {
    record
        .turns
        .iter()
        .filter(|turn| turn.speaker == Speaker::Assistant)
        .collect()
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

// ---- The harness ----

/// A conductor and the instant its call began; every event is given at a ms offset from it.
struct Call {
    conductor: Conductor,
    t0: Instant,
}

impl Call {
    fn new(config: ConductorConfig) -> Self {
        let t0 = Instant::now();
        let record = CallRecord::new(
            CALL_SID.to_owned(),
            Direction::Inbound,
            "+15551230001".to_owned(),
            "+15551230002".to_owned(),
        );
        Call {
            conductor: Conductor::new(config, record, t0),
            t0,
        }
    }

    /// A call whose stream started at 0 ms (assistant does not speak first).
    fn started() -> Self {
        let mut call = Call::new(config());
        let out = call.twilio(0, TWILIO_START);
        assert!(out.is_empty(), "{out:?}");
        call
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn twilio(&mut self, ms: u64, text: &str) -> Vec<Action> {
        let event = parse_twilio_event(text).expect("test frames are valid Twilio messages");
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor.on_twilio(event, now, &mut out);
        out
    }

    fn openai(&mut self, ms: u64, text: &str) -> Vec<Action> {
        let event = parse_server_event(text).expect("test events are valid Realtime events");
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor.on_openai(event, now, &mut out);
        out
    }

    fn tick(&mut self, ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let now = self.at(ms);
        self.conductor.on_tick(now, &mut out);
        out
    }

    fn response_created(&mut self, ms: u64, response_id: &str) -> Vec<Action> {
        self.openai(ms, &response_created_json(response_id))
    }

    fn audio(&mut self, ms: u64, response_id: &str, item_id: &str, audio_ms: u64) -> Vec<Action> {
        self.openai(
            ms,
            &audio_delta_json(response_id, item_id, &audio_b64(audio_ms)),
        )
    }

    /// `response.created` then one audio delta of `audio_ms`, both at `ms`; returns the delta's actions.
    fn speak(&mut self, ms: u64, response_id: &str, item_id: &str, audio_ms: u64) -> Vec<Action> {
        self.response_created(ms, response_id);
        self.audio(ms, response_id, item_id, audio_ms)
    }

    fn response_done(&mut self, ms: u64, response_id: &str, status: &str) -> Vec<Action> {
        self.openai(ms, &response_done_json(response_id, status, Value::Null))
    }

    fn speech_started(&mut self, ms: u64) -> Vec<Action> {
        self.openai(ms, &speech_started_json())
    }

    fn echo(&mut self, ms: u64, mark: &str) -> Vec<Action> {
        self.twilio(ms, &mark_json(mark))
    }

    fn assistant_said(
        &mut self,
        ms: u64,
        response_id: &str,
        item_id: &str,
        text: &str,
    ) -> Vec<Action> {
        self.openai(ms, &transcript_done_json(response_id, item_id, text))
    }

    fn caller_said(&mut self, ms: u64, text: &str) -> Vec<Action> {
        self.openai(ms, &input_transcription_json(text))
    }

    fn function_call(
        &mut self,
        ms: u64,
        response_id: &str,
        call_id: &str,
        name: &str,
        arguments: &str,
    ) -> Vec<Action> {
        self.openai(
            ms,
            &function_call_json(response_id, call_id, name, arguments),
        )
    }

    fn dtmf(&mut self, ms: u64, digit: &str) -> Vec<Action> {
        self.twilio(ms, &dtmf_json(digit))
    }

    fn finish(self, reason: EndReason, ms: u64) -> CallRecord {
        let now = self.at(ms);
        self.conductor.finish(reason, now)
    }

    /// The model calls `end_call` in a response without audio (100-200 ms), then speaks a 1500 ms farewell
    /// (RESPONSE_2, created at 250, audio at 300, done at 400). Returns the final mark's name.
    fn end_call_then_farewell(&mut self) -> String {
        self.response_created(100, RESPONSE_1);
        self.function_call(150, RESPONSE_1, "call_Xy7Qm2Lk9Pz4Rt1v", "end_call", "{}");
        self.response_done(200, RESPONSE_1, "completed");
        self.response_created(250, RESPONSE_2);
        self.audio(300, RESPONSE_2, ITEM_2, 1500);
        let out = self.response_done(400, RESPONSE_2, "completed");
        let marks = mark_names(&out);
        assert_eq!(marks.len(), 1, "{out:?}");
        marks[0].clone()
    }
}

// ---- The sections ----

mod answering_machine;
mod assistant_audio;
mod barge_in;
mod call_end;
mod call_record;
mod cost_cap;
mod dtmf;
mod floods;
mod goodbye_phrase;
mod goodbye_tool;
mod handover;
mod idle_stream;
mod outcome;
mod relay_say;
mod response_requests;
mod rollover;
mod stream_start;
mod transfer;
