//! Unit tests of the [`Conductor`]: each test feeds it realistic Twilio Media Streams and OpenAI Realtime event texts
//! (the shapes of tests/fixtures/twilio and tests/fixtures/realtime) at hand-made instants, then asserts on the actions
//! it returns (every JSON frame is parsed and checked field by field) and on the call record it builds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::calls::{CallRecord, Direction, EndReason, Speaker};
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

const TWILIO_CONNECTED: &str = include_str!("../../tests/fixtures/twilio/connected.json");
const TWILIO_START: &str = include_str!("../../tests/fixtures/twilio/start.json");
const TWILIO_MEDIA: &str = include_str!("../../tests/fixtures/twilio/media.json");
const TWILIO_DTMF: &str = include_str!("../../tests/fixtures/twilio/dtmf.json");
const TWILIO_STOP: &str = include_str!("../../tests/fixtures/twilio/stop.json");
const TWILIO_UNKNOWN: &str = include_str!("../../tests/fixtures/twilio/unknown.json");
const OPENAI_AUDIO_DELTA: &str =
    include_str!("../../tests/fixtures/realtime/response.output_audio.delta.json");
const OPENAI_END_CALL: &str =
    include_str!("../../tests/fixtures/realtime/response.function_call_arguments.done.json");
const OPENAI_RESPONSE_DONE: &str = include_str!("../../tests/fixtures/realtime/response.done.json");
const OPENAI_ERROR: &str = include_str!("../../tests/fixtures/realtime/error.json");
const OPENAI_UNKNOWN: &str = include_str!("../../tests/fixtures/realtime/unknown.json");
const OPENAI_RATE_LIMITS: &str =
    include_str!("../../tests/fixtures/realtime/rate_limits.updated.json");
const OPENAI_SESSION_UPDATED: &str =
    include_str!("../../tests/fixtures/realtime/session.updated.json");
const OPENAI_SPEECH_STOPPED: &str =
    include_str!("../../tests/fixtures/realtime/input_audio_buffer.speech_stopped.json");
const OPENAI_OUTPUT_AUDIO_DONE: &str =
    include_str!("../../tests/fixtures/realtime/response.output_audio.done.json");
const OPENAI_ITEM_TRUNCATED: &str =
    include_str!("../../tests/fixtures/realtime/conversation.item.truncated.json");

fn config() -> ConductorConfig {
    ConductorConfig {
        call_sid: CALL_SID.to_owned(),
        assistant_speaks_first: false,
        greeting: GREETING.to_owned(),
        max_call_duration: Duration::from_millis(MAX_CALL_MS),
        farewell_grace: Duration::from_millis(FAREWELL_GRACE_MS),
        goodbye: GoodbyeMatcher::default(),
        stream_idle_timeout: Duration::from_millis(NEVER_IDLE_MS),
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

// ---- Stream start and caller audio ----

#[test]
fn caller_media_before_start_is_not_forwarded() {
    let mut call = Call::new(config());

    let out = call.twilio(0, TWILIO_MEDIA);

    assert!(out.is_empty(), "{out:?}");
    assert!(!call.conductor.stream_started());
}

#[test]
fn caller_media_after_start_becomes_exactly_an_input_audio_buffer_append_of_the_same_payload() {
    let mut call = Call::started();
    let payload = parse_json(TWILIO_MEDIA)["media"]["payload"].clone();
    assert!(payload.as_str().is_some_and(|p| !p.is_empty()));

    let out = call.twilio(20, TWILIO_MEDIA);

    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        openai_events(&out),
        [json!({"type": "input_audio_buffer.append", "audio": payload})]
    );
}

#[test]
fn a_start_whose_call_sid_differs_from_the_configured_one_ends_the_call_with_call_sid_mismatch() {
    let mut call = Call::new(config());

    let out = call.twilio(0, &start_json("CA00000000000000000000000000000001"));

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error("call_sid_mismatch".into()))]
    );
    assert!(!call.conductor.stream_started());
    assert!(call.twilio(20, TWILIO_MEDIA).is_empty());
}

#[test]
fn a_start_with_the_configured_call_sid_starts_the_stream_and_records_its_stream_sid() {
    let mut call = Call::new(config());
    assert!(call.twilio(0, TWILIO_CONNECTED).is_empty());

    let out = call.twilio(0, TWILIO_START);

    assert!(out.is_empty(), "{out:?}");
    assert!(call.conductor.stream_started());
    assert_eq!(
        call.conductor.record().stream_sid.as_deref(),
        Some(STREAM_SID)
    );
}

#[test]
fn a_second_start_is_ignored_even_with_another_call_sid() {
    let mut call = Call::started();

    let out = call.twilio(10, &start_json("CA00000000000000000000000000000001"));

    assert!(out.is_empty(), "{out:?}");
    assert!(call.conductor.stream_started());
    assert_eq!(call.conductor.record().dropped.repeated_starts, 1);
}

#[test]
fn when_the_assistant_speaks_first_start_sends_a_system_item_with_the_greeting_then_response_create()
 {
    let mut call = Call::new(ConductorConfig {
        assistant_speaks_first: true,
        ..config()
    });

    let out = call.twilio(0, TWILIO_START);

    assert_eq!(
        kinds(&out),
        ["openai:conversation.item.create", "openai:response.create"]
    );
    let events = openai_events(&out);
    let item = &events[0]["item"];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "system");
    assert_eq!(item["content"][0]["type"], "input_text");
    let text = item["content"][0]["text"].as_str().expect("a text part");
    assert!(text.contains(GREETING), "{text}");
    assert_eq!(events[1], json!({"type": "response.create"}));
}

#[test]
fn when_the_assistant_does_not_speak_first_start_sends_nothing_to_openai() {
    let mut call = Call::new(config());

    let out = call.twilio(0, TWILIO_START);

    assert!(openai_events(&out).is_empty(), "{out:?}");
}

// ---- Assistant audio ----

#[test]
fn an_audio_delta_becomes_a_twilio_media_with_the_same_payload_followed_by_mark_g0_s0() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    let payload = parse_json(OPENAI_AUDIO_DELTA)["delta"].clone();

    let out = call.openai(120, OPENAI_AUDIO_DELTA);

    assert_eq!(
        twilio_frames(&out),
        [
            json!({"event": "media", "streamSid": STREAM_SID, "media": {"payload": payload}}),
            json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "g0:s0"}}),
        ]
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn assistant_audio_before_start_is_not_forwarded_nor_counted() {
    let mut call = Call::new(config());
    call.response_created(0, RESPONSE_1);

    let before_start = call.audio(10, RESPONSE_1, ITEM_1, 100);
    call.twilio(20, TWILIO_START);
    let after_start = call.audio(30, RESPONSE_1, ITEM_1, 100);

    assert!(before_start.is_empty(), "{before_start:?}");
    assert_eq!(kinds(&after_start), ["twilio:media", "twilio:mark g0:s0"]);
}

#[test]
fn successive_deltas_are_each_followed_by_a_mark_with_the_next_sequence_number() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);

    let marks: Vec<String> = (0..3)
        .flat_map(|i| mark_names(&call.audio(10 + i, RESPONSE_1, ITEM_1, 40)))
        .collect();

    assert_eq!(marks, ["g0:s0", "g0:s1", "g0:s2"]);
}

// ---- Barge-in ----

#[test]
fn speech_over_unplayed_audio_sends_clear_then_cancels_the_active_response_then_truncates_at_the_time_heard()
 {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);

    let out = call.speech_started(250);

    assert_eq!(
        kinds(&out),
        [
            "twilio:clear",
            "openai:response.cancel",
            "openai:conversation.item.truncate"
        ]
    );
    assert_eq!(
        twilio_frames(&out),
        [json!({"event": "clear", "streamSid": STREAM_SID})]
    );
    let events = openai_events(&out);
    assert_eq!(events[0]["response_id"], RESPONSE_1);
    assert_eq!(events[1]["item_id"], ITEM_1);
    assert_eq!(events[1]["content_index"], 0);
    assert_eq!(events[1]["audio_end_ms"], 250);
}

#[test]
fn a_mark_echo_moves_the_truncate_point_to_the_playback_twilio_confirmed() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    for _ in 0..5 {
        call.audio(0, RESPONSE_1, ITEM_1, 200);
    }
    // Twilio confirms the first 200 ms played only at 300 ms: playback started 100 ms late.
    assert!(call.echo(300, "g0:s0").is_empty());

    let out = call.speech_started(500);

    let truncates = openai_events_of_type(&out, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1, "{out:?}");
    assert_eq!(truncates[0]["audio_end_ms"], 400);
}

#[test]
fn speech_over_unplayed_audio_of_a_finished_response_clears_and_truncates_without_a_cancel() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.response_done(50, RESPONSE_1, "completed");

    let out = call.speech_started(600);

    assert_eq!(
        kinds(&out),
        ["twilio:clear", "openai:conversation.item.truncate"]
    );
    assert_eq!(openai_events(&out)[0]["audio_end_ms"], 600);
}

#[test]
fn speech_while_a_response_is_active_but_all_its_audio_played_only_cancels_that_response() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 100);

    let out = call.speech_started(500);

    assert_eq!(kinds(&out), ["openai:response.cancel"]);
    assert_eq!(
        openai_events(&out)[0],
        json!({"type": "response.cancel", "response_id": RESPONSE_1})
    );
}

#[test]
fn speech_while_a_response_is_active_before_any_audio_only_cancels_that_response() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);

    let out = call.speech_started(100);

    assert_eq!(kinds(&out), ["openai:response.cancel"]);
    assert_eq!(openai_events(&out)[0]["response_id"], RESPONSE_1);
}

#[test]
fn speech_with_nothing_unplayed_and_no_active_response_does_nothing_at_all() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 100);
    call.response_done(50, RESPONSE_1, "completed");

    let out = call.speech_started(500);

    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn only_items_with_unplayed_audio_are_truncated_each_at_the_share_of_it_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 100);
    call.response_done(10, RESPONSE_1, "completed");
    call.speak(20, RESPONSE_2, ITEM_2, 300);

    // 250 ms played: all of item 1 (100 ms), then 150 ms of item 2.
    let out = call.speech_started(250);

    let truncates = openai_events_of_type(&out, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1, "{out:?}");
    assert_eq!(truncates[0]["item_id"], ITEM_2);
    assert_eq!(truncates[0]["audio_end_ms"], 150);
    assert_eq!(
        openai_events_of_type(&out, "response.cancel")[0]["response_id"],
        RESPONSE_2
    );
}

#[test]
fn a_truncate_at_the_end_of_an_odd_sized_delta_does_not_exceed_the_whole_ms_sent() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    // 805 bytes: 100.625 ms, of which 100 whole ms.
    call.openai(
        0,
        &audio_delta_json(RESPONSE_1, ITEM_1, &audio_bytes_b64(805)),
    );

    // At 100 ms, 800 of the 805 bytes have played: audio is unplayed, and 100 whole ms were sent.
    let out = call.speech_started(100);

    let truncates = openai_events_of_type(&out, "conversation.item.truncate");

    assert_eq!(truncates.len(), 1, "{out:?}");
    assert_eq!(truncates[0]["audio_end_ms"], 100);
}

#[test]
fn deltas_of_a_cancelled_response_that_arrive_after_the_barge_in_are_dropped() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(100);

    let late = call.audio(120, RESPONSE_1, ITEM_1, 200);
    let done = call.response_done(130, RESPONSE_1, "cancelled");
    call.response_created(500, RESPONSE_2);
    let next = call.audio(510, RESPONSE_2, ITEM_2, 200);

    assert!(late.is_empty(), "{late:?}");
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(kinds(&next), ["twilio:media", "twilio:mark g1:s1"]);
}

#[test]
fn marks_echoed_because_of_the_clear_do_nothing() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.audio(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(100);

    let stale: Vec<Action> = ["g0:s0", "g0:s1"]
        .iter()
        .flat_map(|mark| call.echo(105, mark))
        .collect();
    let never_sent = call.echo(110, "g7:s99");
    let again = call.speech_started(120);

    assert!(stale.is_empty(), "{stale:?}");
    assert!(never_sent.is_empty(), "{never_sent:?}");
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn a_second_speech_start_before_the_cancelled_response_is_done_sends_nothing_more() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(100);

    let out = call.speech_started(150);

    assert!(out.is_empty(), "{out:?}");
}

#[derive(Debug, Clone)]
enum Step {
    Delta { second_item: bool, bytes: usize },
    Wait { ms: u64 },
    EchoOldest,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<bool>(), 1_usize..4000).prop_map(|(second_item, bytes)| Step::Delta { second_item, bytes }),
        2 => (0_u64..400).prop_map(|ms| Step::Wait { ms }),
        1 => Just(Step::EchoOldest),
    ]
}

proptest! {
    #[test]
    fn a_truncate_never_asks_for_more_audio_than_was_sent_for_its_item_and_comes_with_a_clear(
        steps in prop::collection::vec(step(), 1..40),
        barge_in_after_ms in 0_u64..3000,
    ) {
        let mut call = Call::started();
        call.response_created(0, RESPONSE_1);
        let mut now_ms = 0;
        let mut sent_bytes: HashMap<&str, usize> = HashMap::new();
        let mut pending: VecDeque<String> = VecDeque::new();
        for step in &steps {
            match *step {
                Step::Delta { second_item, bytes } => {
                    let item = if second_item { ITEM_2 } else { ITEM_1 };
                    let out = call.openai(now_ms, &audio_delta_json(RESPONSE_1, item, &audio_bytes_b64(bytes)));
                    *sent_bytes.entry(item).or_default() += bytes;
                    pending.extend(mark_names(&out));
                }
                Step::Wait { ms } => now_ms += ms,
                Step::EchoOldest => {
                    if let Some(mark) = pending.pop_front() {
                        let out = call.echo(now_ms, &mark);
                        prop_assert!(out.is_empty(), "{:?}", out);
                    }
                }
            }
        }

        let out = call.speech_started(now_ms + barge_in_after_ms);

        let truncates = openai_events_of_type(&out, "conversation.item.truncate");
        for truncate in &truncates {
            let item = truncate["item_id"].as_str().expect("truncate names an item");
            let sent_ms = sent_bytes.get(item).copied().unwrap_or(0) as u64 / 8;
            let audio_end_ms = truncate["audio_end_ms"].as_u64().expect("a whole number of ms");
            prop_assert!(audio_end_ms <= sent_ms, "{} > {} for {}", audio_end_ms, sent_ms, item);
            prop_assert_eq!(&truncate["content_index"], &json!(0));
        }
        let cleared = kinds(&out).iter().any(|kind| kind == "twilio:clear");
        prop_assert_eq!(cleared, !truncates.is_empty());
    }
}

// ---- Goodbye by the end_call tool ----

#[test]
fn end_call_is_answered_with_a_function_call_output_for_its_call_id() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);

    let out = call.openai(150, OPENAI_END_CALL);

    assert_eq!(kinds(&out), ["openai:conversation.item.create"]);
    let item = &openai_events(&out)[0]["item"];
    assert_eq!(item["type"], "function_call_output");
    assert_eq!(item["call_id"], "call_Xy7Qm2Lk9Pz4Rt1v");
    let output = parse_json(item["output"].as_str().expect("output is text"));
    assert_eq!(output["ok"], true);
}

#[test]
fn end_call_in_a_response_without_audio_asks_for_the_farewell_once_that_response_is_done() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");

    let out = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(openai_events(&out), [json!({"type": "response.create"})]);
    assert_eq!(out.len(), 1);
}

#[test]
fn after_the_farewell_response_is_done_a_bare_mark_is_sent() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");
    call.response_done(200, RESPONSE_1, "completed");
    call.response_created(250, RESPONSE_2);
    let audio = call.audio(300, RESPONSE_2, ITEM_2, 1500);

    let out = call.response_done(400, RESPONSE_2, "completed");

    assert_eq!(mark_names(&audio), ["g0:s0"]);
    assert_eq!(
        twilio_frames(&out),
        [json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "g0:s1"}})]
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn the_echo_of_the_final_mark_hangs_up_with_goodbye() {
    let mut call = Call::started();
    let final_mark = call.end_call_then_farewell();

    let out = call.echo(1850, &final_mark);

    assert_eq!(out, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn the_echo_of_another_mark_does_not_hang_up() {
    let mut call = Call::started();
    let final_mark = call.end_call_then_farewell();
    assert_ne!(final_mark, "g0:s0");

    let out = call.echo(1800, "g0:s0");

    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn without_the_echo_the_call_hangs_up_at_the_farewell_deadline() {
    let mut call = Call::started();
    call.end_call_then_farewell();
    // At 400 ms, 100 of the 1500 ms sent at 300 ms have played: 1400 ms to go, plus the grace.
    let deadline_ms = 400 + 1400 + FAREWELL_GRACE_MS;

    let early = call.tick(deadline_ms - 1);
    let due = call.tick(deadline_ms);

    assert_eq!(call.conductor.next_deadline(), call.at(deadline_ms));
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(due, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn speech_during_the_farewell_cancels_the_hang_up_on_the_echo_and_at_the_deadline() {
    let mut call = Call::started();
    let final_mark = call.end_call_then_farewell();

    let barge_in = call.speech_started(1000);
    let echo = call.echo(1010, &final_mark);
    let tick = call.tick(400 + 1400 + FAREWELL_GRACE_MS + 1);

    assert_eq!(
        kinds(&barge_in),
        ["twilio:clear", "openai:conversation.item.truncate"]
    );
    assert!(echo.is_empty(), "{echo:?}");
    assert!(tick.is_empty(), "{tick:?}");
    assert_eq!(
        call.conductor.next_deadline(),
        call.at(MAX_CALL_MS),
        "only the maximum duration is left"
    );
}

#[test]
fn speech_while_the_farewell_is_still_being_generated_cancels_it_and_no_final_mark_follows() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");
    call.response_done(200, RESPONSE_1, "completed");
    call.speak(250, RESPONSE_2, ITEM_2, 1500);

    let barge_in = call.speech_started(600);
    let done = call.response_done(650, RESPONSE_2, "cancelled");

    assert_eq!(
        kinds(&barge_in),
        [
            "twilio:clear",
            "openai:response.cancel",
            "openai:conversation.item.truncate"
        ]
    );
    assert!(done.is_empty(), "{done:?}");
}

#[test]
fn end_call_in_a_response_that_spoke_sends_the_final_mark_when_that_response_is_done() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1200);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");

    let out = call.response_done(200, RESPONSE_1, "completed");
    let echo = call.echo(1400, "g0:s1");

    assert_eq!(kinds(&out), ["twilio:mark g0:s1"]);
    assert_eq!(echo, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn an_end_call_whose_response_is_cancelled_does_not_end_the_call() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");

    let done = call.response_done(200, RESPONSE_1, "cancelled");
    let tick = call.tick(60_000);

    assert!(done.is_empty(), "{done:?}");
    assert!(tick.is_empty(), "{tick:?}");
}

#[test]
fn a_farewell_response_that_is_cancelled_sends_no_final_mark() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);
    call.function_call(150, RESPONSE_1, "call_1", "end_call", "{}");
    call.response_done(200, RESPONSE_1, "completed");
    call.response_created(250, RESPONSE_2);

    let done = call.response_done(300, RESPONSE_2, "cancelled");

    assert!(done.is_empty(), "{done:?}");
    assert_eq!(call.conductor.next_deadline(), call.at(MAX_CALL_MS));
}

#[test]
fn end_call_with_an_outcome_stores_it_on_the_record() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);

    call.openai(150, OPENAI_END_CALL);

    assert_eq!(
        call.conductor.record().outcome.as_deref(),
        Some("Table for 4 booked at 19:30 on Friday.")
    );
}

#[test]
fn end_call_with_arguments_that_are_not_json_stores_no_outcome_but_still_ends_the_call() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 500);

    call.function_call(
        150,
        RESPONSE_1,
        "call_1",
        "end_call",
        "{\"outcome\": \"booked",
    );
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(call.conductor.record().outcome, None);
    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
}

#[test]
fn an_unknown_tool_gets_an_error_output_and_a_response_create_only_after_its_response_is_done() {
    let mut call = Call::started();
    call.response_created(100, RESPONSE_1);

    let during = call.function_call(150, RESPONSE_1, "call_7", "lookup_table", "{}");
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(kinds(&during), ["openai:conversation.item.create"]);
    let item = &openai_events(&during)[0]["item"];
    assert_eq!(item["type"], "function_call_output");
    assert_eq!(item["call_id"], "call_7");
    let output = parse_json(item["output"].as_str().expect("output is text"));
    assert_eq!(output["ok"], false);
    assert!(output["error"].is_string(), "{output}");
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
    assert_eq!(done.len(), 1);
}

// ---- Goodbye by phrase (fallback) ----

#[test]
fn a_goodbye_phrase_in_the_assistants_transcript_sends_the_final_mark_after_its_response_is_done() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1000);

    let transcript = call.assistant_said(
        150,
        RESPONSE_1,
        ITEM_1,
        "Thanks for calling the Blue Door, goodbye!",
    );
    let done = call.response_done(200, RESPONSE_1, "completed");
    let echo = call.echo(1200, "g0:s1");

    assert!(transcript.is_empty(), "{transcript:?}");
    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
    assert_eq!(echo, [Action::HangUp(EndReason::Goodbye)]);
}

#[test]
fn an_ordinary_reply_does_not_end_the_call() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1000);

    call.assistant_said(150, RESPONSE_1, ITEM_1, "Sure. For how many people?");
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert!(done.is_empty(), "{done:?}");
}

#[test]
fn a_goodbye_phrase_in_a_cancelled_response_does_not_end_the_call() {
    let mut call = Call::started();
    call.speak(100, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(300);

    let transcript = call.assistant_said(
        350,
        RESPONSE_1,
        ITEM_1,
        "Thanks for calling the Blue Door, goodbye!",
    );
    let done = call.response_done(400, RESPONSE_1, "cancelled");
    let tick = call.tick(60_000);

    assert!(transcript.is_empty(), "{transcript:?}");
    assert!(done.is_empty(), "{done:?}");
    assert!(tick.is_empty(), "{tick:?}");
}

#[test]
fn a_caller_goodbye_ends_the_call_after_the_assistants_next_reply() {
    let mut call = Call::started();
    call.caller_said(100, "Okay, that's everything. Bye!");
    call.speak(200, RESPONSE_1, ITEM_1, 800);
    call.assistant_said(
        250,
        RESPONSE_1,
        ITEM_1,
        "You're welcome, enjoy your dinner.",
    );

    let done = call.response_done(300, RESPONSE_1, "completed");
    let echo = call.echo(1000, "g0:s1");

    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
    assert_eq!(echo, [Action::HangUp(EndReason::Goodbye)]);
}

// ---- DTMF ----

#[test]
fn a_dtmf_digit_becomes_a_user_text_item_then_a_response_create() {
    let mut call = Call::started();

    let out = call.dtmf(100, "5");

    assert_eq!(
        kinds(&out),
        ["openai:conversation.item.create", "openai:response.create"]
    );
    let events = openai_events(&out);
    assert_eq!(
        events[0]["item"],
        json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "The caller pressed 5"}]
        })
    );
    assert_eq!(events[1], json!({"type": "response.create"}));
}

#[test]
fn the_dtmf_fixture_names_its_digit() {
    let mut call = Call::started();

    let out = call.twilio(100, TWILIO_DTMF);

    assert_eq!(
        openai_events(&out)[0]["item"]["content"][0]["text"],
        "The caller pressed 3"
    );
}

#[test]
fn a_dtmf_digit_during_an_active_response_defers_response_create_until_that_response_is_done() {
    let mut call = Call::started();
    call.response_created(50, RESPONSE_1);

    let during = call.dtmf(100, "5");
    let done = call.response_done(200, RESPONSE_1, "completed");

    assert_eq!(kinds(&during), ["openai:conversation.item.create"]);
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
}

#[test]
fn a_dtmf_digit_before_start_is_ignored() {
    let mut call = Call::new(config());

    let out = call.dtmf(100, "5");

    assert!(out.is_empty(), "{out:?}");
}

// ---- The end of the call ----

#[test]
fn stop_hangs_up_as_caller_hung_up() {
    let mut call = Call::started();

    let out = call.twilio(5000, TWILIO_STOP);

    assert_eq!(out, [Action::HangUp(EndReason::CallerHungUp)]);
}

#[test]
fn the_maximum_duration_is_the_next_deadline_and_on_tick_then_hangs_up_with_max_duration() {
    let mut call = Call::started();

    let before = call.tick(MAX_CALL_MS - 1);
    let at_max = call.tick(MAX_CALL_MS);

    assert_eq!(call.conductor.next_deadline(), call.at(MAX_CALL_MS));
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(at_max, [Action::HangUp(EndReason::MaxDuration)]);
}

#[test]
fn the_maximum_duration_wins_over_a_later_farewell_deadline() {
    let mut call = Call::new(ConductorConfig {
        max_call_duration: Duration::from_millis(1000),
        ..config()
    });
    call.twilio(0, TWILIO_START);
    call.end_call_then_farewell();

    let out = call.tick(1000);

    assert_eq!(call.conductor.next_deadline(), call.at(1000));
    assert_eq!(out, [Action::HangUp(EndReason::MaxDuration)]);
}

#[test]
fn a_fatal_error_hangs_up_with_its_code() {
    let mut call = Call::started();

    let out = call.openai(
        100,
        &error_json("invalid_api_key", "Incorrect API key provided."),
    );

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error("invalid_api_key".into()))]
    );
}

#[test]
fn response_cancel_not_active_and_other_request_errors_do_nothing() {
    let mut call = Call::started();

    let not_active = call.openai(
        100,
        &error_json(
            "response_cancel_not_active",
            "Cancellation failed: no active response found",
        ),
    );
    let already_active = call.openai(110, OPENAI_ERROR);

    assert!(not_active.is_empty(), "{not_active:?}");
    assert!(already_active.is_empty(), "{already_active:?}");
}

#[test]
fn a_hang_up_request_ends_the_call_as_hung_up_by_api() {
    let mut call = Call::started();
    let mut out = Vec::new();

    call.conductor.on_hang_up_request(&mut out);

    assert_eq!(out, [Action::HangUp(EndReason::HungUpByApi)]);
}

#[test]
fn an_instruction_becomes_a_system_text_item() {
    let mut call = Call::started();
    let mut out = Vec::new();

    call.conductor
        .on_instruction("Ask whether they need a high chair.", &mut out);

    assert_eq!(
        openai_events(&out),
        [json!({
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "Ask whether they need a high chair."}]
            }
        })]
    );
}

#[test]
fn events_the_conductor_has_no_use_for_do_nothing() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);

    let out: Vec<Action> = [
        call.twilio(10, TWILIO_UNKNOWN),
        call.twilio(10, TWILIO_CONNECTED),
        call.openai(10, OPENAI_UNKNOWN),
        call.openai(10, OPENAI_RATE_LIMITS),
        call.openai(10, OPENAI_SESSION_UPDATED),
        call.openai(10, OPENAI_SPEECH_STOPPED),
        call.openai(10, OPENAI_OUTPUT_AUDIO_DONE),
        call.openai(10, OPENAI_ITEM_TRUNCATED),
    ]
    .concat();

    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn skipped_frames_are_counted_on_the_record() {
    let mut call = Call::started();

    let _ = call.conductor.on_skipped_frame(call.at(0));
    let _ = call.conductor.on_skipped_frame(call.at(0));

    assert_eq!(call.conductor.record().skipped_frames, 2);
}

// ---- The call record ----

#[test]
fn caller_and_assistant_turns_are_recorded_in_order_with_their_offsets() {
    let mut call = Call::started();
    call.caller_said(1200, "Hi, I'd like a table for four.");
    call.speak(1300, RESPONSE_1, ITEM_1, 2000);
    call.assistant_said(1400, RESPONSE_1, ITEM_1, "Sure, for what time?");
    call.response_done(1450, RESPONSE_1, "completed");
    call.caller_said(5000, "Seven thirty.");

    let record = call.finish(EndReason::CallerHungUp, 6000);

    let turns: Vec<(Speaker, &str, u64, bool, Option<&str>)> = record
        .turns
        .iter()
        .map(|t| {
            (
                t.speaker,
                t.text.as_str(),
                t.offset_ms,
                t.interrupted,
                t.item_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            (
                Speaker::Caller,
                "Hi, I'd like a table for four.",
                1200,
                false,
                None
            ),
            (
                Speaker::Assistant,
                "Sure, for what time?",
                1400,
                false,
                Some(ITEM_1)
            ),
            (Speaker::Caller, "Seven thirty.", 5000, false, None),
        ]
    );
}

#[test]
fn an_assistant_turn_whose_transcript_arrives_after_the_barge_in_is_cut_to_the_share_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.speech_started(2000);

    call.assistant_said(2100, RESPONSE_1, ITEM_1, TEN_WORDS);
    let record = call.finish(EndReason::CallerHungUp, 9000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(word_count(&turns[0].text), 5, "{}", turns[0].text);
    assert_eq!(turns[0].text, "One two three four five");
}

#[test]
fn an_assistant_turn_recorded_before_the_barge_in_is_cut_to_the_share_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.assistant_said(10, RESPONSE_1, ITEM_1, TEN_WORDS);
    call.response_done(20, RESPONSE_1, "completed");
    assert!(!assistant_turns(call.conductor.record())[0].interrupted);

    call.speech_started(2000);
    let record = call.finish(EndReason::CallerHungUp, 9000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(word_count(&turns[0].text), 5, "{}", turns[0].text);
    assert_eq!(turns[0].offset_ms, 10);
}

#[test]
fn a_turn_cancelled_while_generating_keeps_no_more_words_than_could_be_spoken_in_the_time_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 2000);
    call.speech_started(1000);

    call.assistant_said(
        1100,
        RESPONSE_1,
        ITEM_1,
        &format!("{TEN_WORDS} {TEN_WORDS}"),
    );
    let record = call.finish(EndReason::CallerHungUp, 9000);

    // Half the audio sent would be 10 of the 20 words; one second heard at a brisk 3 words/s is 3.
    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(turns[0].text, "One two three");
}

#[test]
fn an_assistant_turn_of_which_nothing_was_heard_is_not_recorded_when_its_transcript_arrives_after_the_barge_in()
 {
    let mut call = Call::started();
    call.speak(1000, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(1000);

    call.assistant_said(1100, RESPONSE_1, ITEM_1, "Sure, Friday at seven.");
    let record = call.finish(EndReason::CallerHungUp, 9000);

    assert!(assistant_turns(&record).is_empty(), "{:?}", record.turns);
}

#[test]
fn an_assistant_turn_of_which_nothing_was_heard_is_not_kept_as_an_empty_turn_when_its_transcript_came_first()
 {
    let mut call = Call::started();
    call.speak(1000, RESPONSE_1, ITEM_1, 1000);
    call.assistant_said(1000, RESPONSE_1, ITEM_1, "Sure, Friday at seven.");
    call.response_done(1000, RESPONSE_1, "completed");

    call.speech_started(1000);
    let record = call.finish(EndReason::CallerHungUp, 9000);

    // Same record as when the transcript arrives after the barge-in: no turn for words nobody heard.
    assert!(assistant_turns(&record).is_empty(), "{:?}", record.turns);
}

#[test]
fn a_reply_cancelled_before_any_of_its_audio_was_sent_is_not_recorded_as_heard() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    call.openai(
        50,
        &transcript_delta_json(RESPONSE_1, ITEM_1, "Sure, Friday at"),
    );

    call.speech_started(100);
    call.assistant_said(120, RESPONSE_1, ITEM_1, "Sure, Friday at");
    call.response_done(130, RESPONSE_1, "cancelled");
    let record = call.finish(EndReason::CallerHungUp, 9000);

    assert!(assistant_turns(&record).is_empty(), "{:?}", record.turns);
}

#[test]
fn finishing_a_call_hung_up_mid_reply_cuts_the_unplayed_turn() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.assistant_said(10, RESPONSE_1, ITEM_1, TEN_WORDS);
    call.response_done(20, RESPONSE_1, "completed");

    let record = call.finish(EndReason::CallerHungUp, 1000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    // 1000 of 4000 ms heard: a quarter of ten words, rounded.
    assert_eq!(turns[0].text, "One two three");
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp));
    assert_eq!(record.duration_ms, 1000);
}

#[test]
fn finishing_a_call_whose_reply_fully_played_keeps_the_whole_turn() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.assistant_said(10, RESPONSE_1, ITEM_1, TEN_WORDS);
    call.response_done(20, RESPONSE_1, "completed");

    let record = call.finish(EndReason::Goodbye, 1000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(!turns[0].interrupted);
    assert_eq!(turns[0].text, TEN_WORDS);
    assert_eq!(record.end_reason, Some(EndReason::Goodbye));
}

#[test]
fn finishing_mid_reply_records_the_transcript_received_so_far_cut_to_the_share_heard() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 4000);
    call.openai(
        10,
        &transcript_delta_json(RESPONSE_1, ITEM_1, "One two three four five "),
    );
    call.openai(
        20,
        &transcript_delta_json(RESPONSE_1, ITEM_1, "six seven eight nine ten."),
    );

    let record = call.finish(EndReason::CallerHungUp, 2000);

    let turns = assistant_turns(&record);
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(turns[0].text, "One two three four five");
}

#[test]
fn usage_is_summed_over_every_response_done() {
    let mut call = Call::started();
    let usage = json!({
        "total_tokens": 100,
        "input_tokens": 60,
        "output_tokens": 40,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 50, "cached_tokens": 0},
        "output_token_details": {"text_tokens": 5, "audio_tokens": 35}
    });

    call.openai(100, OPENAI_RESPONSE_DONE);
    call.openai(200, &response_done_json(RESPONSE_2, "completed", usage));

    let total = call.conductor.record().usage;
    assert_eq!(total.total_tokens, 1742 + 100);
    assert_eq!(total.input_tokens, 1418 + 60);
    assert_eq!(total.output_tokens, 324 + 40);
    assert_eq!(total.input_token_details.text_tokens, 612 + 10);
    assert_eq!(total.input_token_details.audio_tokens, 806 + 50);
    assert_eq!(total.input_token_details.cached_tokens, 1152);
    assert_eq!(total.output_token_details.text_tokens, 71 + 5);
    assert_eq!(total.output_token_details.audio_tokens, 253 + 35);
}

// ---- Requests for a response: never two at once, none after the goodbye ----

#[test]
fn a_second_request_before_the_first_response_is_created_waits_for_that_response_to_be_done() {
    let mut call = Call::started();
    let first = call.dtmf(100, "1");

    let second = call.dtmf(150, "2");
    call.response_created(200, RESPONSE_1);
    let done = call.response_done(900, RESPONSE_1, "completed");

    assert_eq!(
        kinds(&first),
        ["openai:conversation.item.create", "openai:response.create"]
    );
    assert_eq!(
        kinds(&second),
        ["openai:conversation.item.create"],
        "the first response.create is not answered yet: a second one is rejected with \
         conversation_already_has_active_response"
    );
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
}

#[test]
fn a_request_after_a_barge_in_waits_for_the_cancelled_response_to_be_done() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.speech_started(200);

    let during_cancel = call.dtmf(210, "5");
    let done = call.response_done(250, RESPONSE_1, "cancelled");

    assert_eq!(
        kinds(&during_cancel),
        ["openai:conversation.item.create"],
        "the cancelled response stays active until its response.done"
    );
    assert_eq!(openai_events(&done), [json!({"type": "response.create"})]);
}

#[test]
fn no_response_is_requested_once_the_final_mark_is_sent() {
    let mut call = Call::started();
    call.speak(0, RESPONSE_1, ITEM_1, 1000);
    call.function_call(50, RESPONSE_1, "call_lookup", "lookup_table", "{}");
    call.function_call(60, RESPONSE_1, "call_end", "end_call", "{}");

    let done = call.response_done(100, RESPONSE_1, "completed");

    assert_eq!(kinds(&done), ["twilio:mark g0:s1"]);
}

#[test]
fn a_request_deferred_behind_the_end_call_response_is_served_by_the_farewell_request() {
    let mut call = Call::started();
    call.response_created(0, RESPONSE_1);
    call.dtmf(50, "5");
    call.function_call(60, RESPONSE_1, "call_end", "end_call", "{}");
    let first_done = call.response_done(100, RESPONSE_1, "completed");
    call.speak(150, RESPONSE_2, ITEM_2, 1000);

    let farewell_done = call.response_done(200, RESPONSE_2, "completed");

    assert_eq!(kinds(&first_done), ["openai:response.create"]);
    assert_eq!(kinds(&farewell_done), ["twilio:mark g0:s1"]);
}

proptest! {
    #[test]
    fn only_the_echo_of_the_final_mark_hangs_up(name in "\\PC{0,24}") {
        let mut call = Call::started();
        let final_mark = call.end_call_then_farewell();
        prop_assume!(name != final_mark);

        let out = call.echo(1000, &name);

        prop_assert!(out.is_empty(), "{:?}", out);
    }
}

// ---- The idle stream ----

const IDLE_MS: u64 = 5_000;

fn idle_config() -> ConductorConfig {
    ConductorConfig {
        stream_idle_timeout: Duration::from_millis(IDLE_MS),
        ..config()
    }
}

/// A call with a 5 s idle timeout whose stream started at 0 ms.
fn started_with_idle_timeout() -> Call {
    let mut call = Call::new(idle_config());
    let out = call.twilio(0, TWILIO_START);
    assert!(out.is_empty(), "{out:?}");
    call
}

#[test]
fn a_stream_that_sends_nothing_for_the_idle_timeout_is_hung_up_as_stream_idle() {
    let mut call = started_with_idle_timeout();

    let before = call.tick(IDLE_MS - 1);
    let at_timeout = call.tick(IDLE_MS);

    assert!(before.is_empty(), "{before:?}");
    assert_eq!(
        at_timeout,
        [Action::HangUp(EndReason::Error("stream_idle".into()))]
    );
    let end = call.at(IDLE_MS);
    let record = call
        .conductor
        .finish(EndReason::Error("stream_idle".into()), end);
    assert_eq!(
        record.end_reason.map(|r| r.to_string()).as_deref(),
        Some("error:stream_idle")
    );
}

#[test]
fn the_next_deadline_is_the_idle_deadline_when_it_comes_before_the_maximum_duration() {
    let call = started_with_idle_timeout();

    assert_eq!(call.conductor.next_deadline(), call.at(IDLE_MS));
}

#[test]
fn every_twilio_event_restarts_the_idle_timer() {
    let mut call = started_with_idle_timeout();
    call.twilio(3_000, TWILIO_MEDIA);
    call.twilio(4_000, &mark_json("unknown-mark"));

    let at_first_timeout = call.tick(IDLE_MS);
    let deadline = call.conductor.next_deadline();
    let at_new_timeout = call.tick(4_000 + IDLE_MS);

    assert!(at_first_timeout.is_empty(), "{at_first_timeout:?}");
    assert_eq!(deadline, call.at(4_000 + IDLE_MS));
    assert_eq!(
        at_new_timeout,
        [Action::HangUp(EndReason::Error("stream_idle".into()))]
    );
}

#[test]
fn a_skipped_frame_restarts_the_idle_timer_too() {
    let mut call = started_with_idle_timeout();

    call.conductor.on_frame(call.at(3_000));
    let _ = call.conductor.on_skipped_frame(call.at(3_000));
    let at_first_timeout = call.tick(IDLE_MS);

    assert!(at_first_timeout.is_empty(), "{at_first_timeout:?}");
    assert_eq!(call.conductor.next_deadline(), call.at(3_000 + IDLE_MS));
    assert_eq!(call.conductor.record().skipped_frames, 1);
}

#[test]
fn a_stream_that_never_sends_start_is_hung_up_when_idle() {
    let mut call = Call::new(idle_config());

    let out = call.tick(IDLE_MS);

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error("stream_idle".into()))]
    );
}

#[test]
fn the_maximum_duration_wins_over_an_idle_timeout_due_at_the_same_instant() {
    let mut call = Call::new(ConductorConfig {
        max_call_duration: Duration::from_millis(IDLE_MS),
        ..idle_config()
    });
    call.twilio(0, TWILIO_START);

    let out = call.tick(IDLE_MS);

    assert_eq!(out, [Action::HangUp(EndReason::MaxDuration)]);
}

proptest! {
    #[test]
    fn a_stream_is_never_hung_up_as_idle_while_frames_arrive_within_the_timeout(
        gaps_ms in proptest::collection::vec(0..IDLE_MS, 1..20),
    ) {
        let mut call = started_with_idle_timeout();
        let mut now_ms = 0;

        let mut hang_ups = Vec::new();
        for gap_ms in gaps_ms {
            now_ms += gap_ms;
            hang_ups.extend(call.tick(now_ms));
            let forwarded = call.twilio(now_ms, TWILIO_MEDIA);
            hang_ups.extend(forwarded.into_iter().filter(|a| matches!(a, Action::HangUp(_))));
        }

        prop_assert!(hang_ups.is_empty(), "{:?}", hang_ups);
    }
}

// ---- Floods: the DTMF rate limit, log budgets, protocol violations ----

/// A `Write` into a buffer shared with the test.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("no test panics while holding the log buffer")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `act` with every log line at `info` and above (the server's default level) written to a buffer, and returns
/// those lines.
fn lines_logged_at_info(act: impl FnOnce()) -> Vec<String> {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, act);
    let bytes = buffer.0.lock().expect("the test is done logging").clone();
    String::from_utf8(bytes)
        .expect("log lines are UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn lines_containing<'a>(lines: &'a [String], message: &str) -> Vec<&'a String> {
    lines.iter().filter(|l| l.contains(message)).collect()
}

fn stop_json(call_sid: &str, stream_sid: &str) -> String {
    json!({
        "event": "stop",
        "sequenceNumber": "6",
        "streamSid": stream_sid,
        "stop": {"accountSid": "AC5f1e2d3c4b5a69788796a5b4c3d2e1f0", "callSid": call_sid}
    })
    .to_string()
}

fn error_event_json(code: &str, message: &str) -> String {
    json!({
        "type": "error",
        "event_id": "event_C9xL0018gH7kTq2Ws",
        "error": {"type": "invalid_request_error", "code": code, "message": message, "param": null, "event_id": null}
    })
    .to_string()
}

/// The DTMF items the actions send to the model, as their texts.
fn dtmf_texts(actions: &[Action]) -> Vec<String> {
    openai_events_of_type(actions, "conversation.item.create")
        .iter()
        .map(|e| {
            e["item"]["content"][0]["text"]
                .as_str()
                .expect("a text item")
                .to_owned()
        })
        .collect()
}

#[test]
fn a_dtmf_digit_outside_the_keypad_is_a_skipped_frame_and_nothing_reaches_the_model() {
    let mut call = Call::started();
    let text = dtmf_json(&"7".repeat(60_000));

    // What the bridge does with a frame that does not parse.
    let parsed = parse_twilio_event(&text);
    let logged = call.conductor.on_skipped_frame(call.at(100));

    assert!(parsed.is_err(), "{parsed:?}");
    assert_eq!(logged, Some(0));
    assert_eq!(call.conductor.record().skipped_frames, 1);
}

#[test]
fn a_burst_of_dtmf_keys_is_passed_on_up_to_the_burst_and_the_rest_is_dropped_and_counted() {
    let mut call = Call::started();

    let out: Vec<Action> = (0..100).flat_map(|_| call.dtmf(100, "5")).collect();

    assert_eq!(dtmf_texts(&out).len(), DTMF_BURST as usize);
    assert!(
        dtmf_texts(&out)
            .iter()
            .all(|text| text == "The caller pressed 5")
    );
    assert_eq!(
        call.conductor.record().dropped.dtmf_digits,
        100 - u64::from(DTMF_BURST)
    );
}

#[test]
fn after_the_burst_one_dtmf_key_passes_per_refill_interval() {
    let mut call = Call::started();
    for _ in 0..DTMF_BURST {
        call.dtmf(100, "1");
    }
    let refill_ms = DTMF_REFILL.as_millis() as u64;

    let too_early = call.dtmf(100 + refill_ms - 1, "2");
    let on_time = call.dtmf(100 + refill_ms, "3");
    let right_after = call.dtmf(100 + refill_ms + 1, "4");

    assert!(dtmf_texts(&too_early).is_empty(), "{too_early:?}");
    assert_eq!(dtmf_texts(&on_time), ["The caller pressed 3"]);
    assert!(dtmf_texts(&right_after).is_empty(), "{right_after:?}");
    assert_eq!(call.conductor.record().dropped.dtmf_digits, 2);
}

#[test]
fn a_caller_pressing_three_keys_a_second_for_ten_minutes_never_meets_the_dtmf_limit() {
    let mut call = Call::started();

    let passed: usize = (0..1800u64)
        .map(|i| dtmf_texts(&call.dtmf(100 + i * 333, "#")).len())
        .sum();

    assert_eq!(passed, 1800);
    assert_eq!(call.conductor.record().dropped.dtmf_digits, 0);
}

#[test]
fn a_dtmf_flood_writes_at_most_the_log_burst_of_each_kind_and_bounded_text_to_the_model() {
    let mut call = Call::started();
    let mut out = Vec::new();

    let lines = lines_logged_at_info(|| {
        for i in 0..5_000u64 {
            out.extend(call.dtmf(100 + i / 10, "9"));
        }
    });

    assert_eq!(
        lines_containing(&lines, "caller pressed a key").len(),
        LOG_BURST as usize
    );
    assert_eq!(
        lines_containing(&lines, "DTMF key over the rate limit dropped").len(),
        LOG_BURST as usize
    );
    assert_eq!(lines.len(), 2 * LOG_BURST as usize, "{lines:#?}");
    // 500 ms of flood: the burst and two refills.
    assert_eq!(dtmf_texts(&out).len(), DTMF_BURST as usize + 2);
    assert_eq!(
        call.conductor.record().dropped.dtmf_digits,
        5_000 - u64::from(DTMF_BURST) - 2
    );
}

#[test]
fn a_stop_naming_another_call_sid_is_ignored_and_counted() {
    let mut call = Call::started();

    let out = call.twilio(
        5000,
        &stop_json("CA00000000000000000000000000000001", STREAM_SID),
    );

    assert!(out.is_empty(), "{out:?}");
    assert_eq!(call.conductor.record().dropped.foreign_stops, 1);
    assert_eq!(call.twilio(5020, TWILIO_MEDIA).len(), 1);
}

#[test]
fn a_stop_naming_another_stream_sid_is_ignored_and_counted() {
    let mut call = Call::started();

    let out = call.twilio(
        5000,
        &stop_json(CALL_SID, "MZ00000000000000000000000000000001"),
    );

    assert!(out.is_empty(), "{out:?}");
    assert_eq!(call.conductor.record().dropped.foreign_stops, 1);
}

#[test]
fn a_flood_of_foreign_stops_is_logged_within_the_budget_with_the_call_sid_clipped() {
    let mut call = Call::started();
    let long_call_sid = format!("CA{}", "f".repeat(60_000));
    let stop = stop_json(&long_call_sid, STREAM_SID);

    let lines = lines_logged_at_info(|| {
        for _ in 0..1_000 {
            call.twilio(5000, &stop);
        }
    });

    assert_eq!(lines.len(), LOG_BURST as usize, "{lines:#?}");
    assert!(lines.iter().all(|l| l.len() < 1_000), "a line of 60 KB");
    assert_eq!(call.conductor.record().dropped.foreign_stops, 1_000);
    assert_eq!(
        call.twilio(5020, TWILIO_STOP),
        [Action::HangUp(EndReason::CallerHungUp)]
    );
}

#[test]
fn repeated_starts_are_ignored_counted_and_logged_within_the_budget() {
    let mut call = Call::started();

    let lines = lines_logged_at_info(|| {
        for _ in 0..1_000 {
            let out = call.twilio(10, TWILIO_START);
            assert!(out.is_empty(), "{out:?}");
        }
    });

    assert_eq!(
        lines_containing(&lines, "second start message ignored").len(),
        LOG_BURST as usize
    );
    assert_eq!(call.conductor.record().dropped.repeated_starts, 1_000);
    assert_eq!(call.conductor.stream_sid(), Some(STREAM_SID));
}

#[test]
fn an_error_event_flood_is_counted_logged_within_the_budget_and_the_call_goes_on() {
    let mut call = Call::started();
    let refill_ms = LOG_REFILL.as_millis() as u64;
    let mut out = Vec::new();

    let lines = lines_logged_at_info(|| {
        for _ in 0..20_000 {
            out.extend(call.openai(1_000, OPENAI_ERROR));
        }
        out.extend(call.openai(1_000 + refill_ms, OPENAI_ERROR));
    });

    assert!(out.is_empty(), "{out:?}");
    assert_eq!(call.conductor.record().dropped.openai_errors, 20_001);
    assert_eq!(lines.len(), LOG_BURST as usize + 1, "{lines:#?}");
    let suppressed = 20_000 - u64::from(LOG_BURST);
    assert!(
        lines[LOG_BURST as usize].contains(&format!("suppressed={suppressed}")),
        "{}",
        lines[LOG_BURST as usize]
    );
    assert_eq!(call.twilio(1_000 + refill_ms, TWILIO_MEDIA).len(), 1);
}

#[test]
fn an_error_message_of_60000_characters_is_logged_clipped() {
    let mut call = Call::started();
    let error = error_event_json("server_error", &"x".repeat(60_000));

    let lines = lines_logged_at_info(|| {
        call.openai(1_000, &error);
    });

    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(&"x".repeat(LOGGED_TEXT_MAX_BYTES)));
    assert!(!lines[0].contains(&"x".repeat(LOGGED_TEXT_MAX_BYTES + 1)));
}

#[test]
fn a_fatal_error_still_ends_the_call_after_an_error_flood() {
    let mut call = Call::started();
    for _ in 0..100 {
        call.openai(1_000, OPENAI_ERROR);
    }

    let out = call.openai(1_000, &error_event_json("insufficient_quota", "quota"));

    assert_eq!(
        out,
        [Action::HangUp(EndReason::Error(
            "insufficient_quota".into()
        ))]
    );
}

#[test]
fn skipped_frames_may_be_logged_for_the_burst_then_once_per_refill_with_the_suppressed_count() {
    let mut call = Call::started();
    let refill_ms = LOG_REFILL.as_millis() as u64;

    let burst: Vec<Option<u64>> = (0..LOG_BURST + 100)
        .map(|_| call.conductor.on_skipped_frame(call.at(100)))
        .collect();
    let after_refill = call.conductor.on_skipped_frame(call.at(100 + refill_ms));

    assert!(burst[..LOG_BURST as usize].iter().all(|l| *l == Some(0)));
    assert!(burst[LOG_BURST as usize..].iter().all(Option::is_none));
    assert_eq!(after_refill, Some(100));
    assert_eq!(
        call.conductor.record().skipped_frames,
        u64::from(LOG_BURST) + 101
    );
}

#[test]
fn malformed_openai_events_are_counted_and_may_be_logged_within_the_budget() {
    let mut call = Call::started();

    let logged = (0..1_000)
        .filter(|_| {
            call.conductor
                .on_malformed_openai_event(call.at(100))
                .is_some()
        })
        .count();

    assert_eq!(logged, LOG_BURST as usize);
    assert_eq!(
        call.conductor.record().dropped.malformed_openai_events,
        1_000
    );
}
