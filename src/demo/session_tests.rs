//! The stand-in session's protocol: VAD by energy, responses streamed and cancelled, truncation checked.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::demo::script::{ASSISTANT_GOODBYE, ASSISTANT_GREETING};
use crate::simulate::audio::MULAW_SILENCE;

fn sent(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send(text) => {
                Some(serde_json::from_str(text).expect("the stand-in sends JSON"))
            }
            Output::Note(_) => None,
        })
        .collect()
}

fn types(outputs: &[Output]) -> Vec<String> {
    sent(outputs)
        .iter()
        .map(|event| {
            event["type"]
                .as_str()
                .expect("every event has a type")
                .to_owned()
        })
        .collect()
}

fn append(session: &mut StandInSession, ulaw: &[u8], now: Instant) -> Vec<Output> {
    let event = json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(ulaw)});
    session.on_client_event(&event.to_string(), now)
}

/// A loud 20 ms-multiple of μ-law: 0x00 decodes to the largest negative sample.
fn loud(ms: usize) -> Vec<u8> {
    vec![0x00; ms * 8]
}

fn silence(ms: usize) -> Vec<u8> {
    vec![MULAW_SILENCE; ms * 8]
}

/// A `session.update` with server VAD, caller transcripts and the inbound `end_call` tool.
fn session_update() -> Value {
    json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"transcription": {"model": "m"}, "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
        "tools": [{"type": "function", "name": "end_call", "parameters": {"type": "object", "properties": {}}}]}})
}

fn session_with_end_call() -> StandInSession {
    let mut session = StandInSession::new();
    let out = session.on_client_event(&session_update().to_string(), Instant::now());
    assert_eq!(types(&out), ["session.updated"]);
    session
}

#[test]
fn loud_audio_starts_speech_and_half_a_second_of_silence_stops_it() {
    // Arrange
    let mut session = session_with_end_call();
    let now = Instant::now();

    // Act
    let quiet = append(&mut session, &silence(200), now);
    let started = append(&mut session, &loud(100), now);
    let stopped = append(&mut session, &silence(500), now);

    // Assert
    assert!(types(&quiet).is_empty());
    assert_eq!(types(&started), ["input_audio_buffer.speech_started"]);
    assert_eq!(
        sent(&started)[0]["audio_start_ms"],
        0,
        "200 ms minus 300 ms padding"
    );
    let stopped = types(&stopped);
    assert_eq!(
        &stopped[..3],
        [
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed"
        ]
    );
    assert_eq!(
        stopped[3], "response.created",
        "create_response is on by default"
    );
}

#[test]
fn a_response_streams_its_speech_then_completes() {
    // Arrange
    let mut session = session_with_end_call();
    let start = Instant::now();
    let created = session.on_client_event(r#"{"type":"response.create"}"#, start);

    // Act: long enough for every delta of the greeting.
    let mut out = Vec::new();
    let mut now = start;
    while let Some(deadline) = session.next_deadline() {
        now = deadline.max(now);
        out.extend(session.on_tick(now));
    }

    // Assert
    assert!(types(&created).contains(&"response.created".to_owned()));
    let events = sent(&out);
    let audio_bytes: usize = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .map(|e| {
            BASE64
                .decode(e["delta"].as_str().expect("delta"))
                .expect("base64")
                .len()
        })
        .sum();
    assert_eq!(audio_bytes, ASSISTANT_GREETING.audio.len());
    let done = events.last().expect("events");
    assert_eq!(done["type"], "response.done");
    assert_eq!(done["response"]["status"], "completed");
    assert!(
        now - start < Duration::from_millis(ASSISTANT_GREETING.duration_ms()),
        "faster than real time"
    );
}

#[test]
fn speech_during_a_response_cancels_it_and_a_late_cancel_is_refused() {
    // Arrange
    let mut session = session_with_end_call();
    let now = Instant::now();
    session.on_client_event(r#"{"type":"response.create"}"#, now);
    session.on_tick(now);

    // Act
    let barge_in = append(&mut session, &loud(100), now);
    let late_cancel = session.on_client_event(r#"{"type":"response.cancel"}"#, now);

    // Assert
    let events = sent(&barge_in);
    assert_eq!(events[0]["type"], "input_audio_buffer.speech_started");
    let done = events.last().expect("events");
    assert_eq!(done["type"], "response.done");
    assert_eq!(done["response"]["status"], "cancelled");
    assert_eq!(
        done["response"]["status_details"]["reason"],
        "turn_detected"
    );
    assert_eq!(
        sent(&late_cancel)[0]["error"]["code"],
        "response_cancel_not_active"
    );
}

#[test]
fn a_truncate_past_the_audio_produced_is_refused_with_the_apis_message() {
    // Arrange: one delta (100 ms) of the greeting produced.
    let mut session = session_with_end_call();
    let now = Instant::now();
    session.on_client_event(r#"{"type":"response.create"}"#, now);
    let delta = sent(&session.on_tick(now)).remove(0);
    let item_id = delta["item_id"].as_str().expect("item_id").to_owned();
    let truncate = |ms: u64| {
        json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": ms}).to_string()
    };

    // Act
    let too_far = session.on_client_event(&truncate(150), now);
    let heard = session.on_client_event(&truncate(80), now);

    // Assert
    assert_eq!(
        sent(&too_far)[0]["error"]["message"],
        "Audio content of 100ms is already shorter than 150ms"
    );
    assert_eq!(types(&heard), ["conversation.item.truncated"]);
}

#[test]
fn the_goodbye_response_calls_end_call_before_it_is_done() {
    // Arrange: the greeting and the answer are used up.
    let mut session = session_with_end_call();
    session.responses_started = 2;
    let now = Instant::now();
    session.on_client_event(r#"{"type":"response.create"}"#, now);

    // Act
    let mut out = Vec::new();
    let mut at = now;
    while let Some(deadline) = session.next_deadline() {
        at = deadline.max(at);
        out.extend(session.on_tick(at));
    }

    // Assert
    let events = sent(&out);
    let transcript = events
        .iter()
        .find(|e| e["type"] == "response.output_audio_transcript.done")
        .expect("a transcript");
    assert_eq!(transcript["transcript"], ASSISTANT_GOODBYE.text);
    let call = events
        .iter()
        .position(|e| e["type"] == "response.function_call_arguments.done")
        .expect("end_call is called");
    assert_eq!(events[call]["name"], "end_call");
    assert_eq!(
        events[call]["arguments"], "{}",
        "the inbound tool takes no outcome"
    );
    assert!(call < events.len() - 1 && events.last().expect("events")["type"] == "response.done");
}

#[test]
fn malformed_and_unknown_events_get_errors_not_panics() {
    let mut session = StandInSession::new();
    let now = Instant::now();
    for (text, code) in [
        ("{not json", "invalid_json"),
        (r#"{"type":"no.such.event"}"#, "invalid_value"),
        (
            r#"{"type":"input_audio_buffer.append","audio":"!!"}"#,
            "invalid_value",
        ),
        (
            r#"{"type":"conversation.item.truncate","item_id":"x","audio_end_ms":1}"#,
            "invalid_value",
        ),
    ] {
        let out = session.on_client_event(text, now);
        assert_eq!(sent(&out)[0]["error"]["code"], code, "{text}");
    }
}

/// Where [`a_whole_scripted_session_is_written_for_the_sdk_conformance_check`] writes the stand-in's server events,
/// for `tests/conformance/test_demo_standin_events.py`.
const CONFORMANCE_EVENTS: &str = "target/conformance/demo-standin-server-events.jsonl";

#[test]
fn a_whole_scripted_session_is_written_for_the_sdk_conformance_check() {
    // Arrange
    let mut session = StandInSession::new();
    let mut now = Instant::now();
    let mut out = session.on_open();
    out.extend(session.on_client_event(&session_update().to_string(), now));
    let run_out = |session: &mut StandInSession, now: &mut Instant, out: &mut Vec<Output>| {
        while let Some(deadline) = session.next_deadline() {
            *now = deadline.max(*now);
            out.extend(session.on_tick(*now));
        }
    };

    // Act: greeting, the caller's turn, an answer cut by a barge-in, a late cancel, truncates, the goodbye.
    out.extend(session.on_client_event(
        r#"{"type":"conversation.item.create","item":{"type":"message","role":"system","content":[{"type":"input_text","text":"Greet the caller."}]}}"#,
        now,
    ));
    out.extend(session.on_client_event(r#"{"type":"response.create"}"#, now));
    run_out(&mut session, &mut now, &mut out);
    out.extend(append(&mut session, &loud(200), now));
    out.extend(append(&mut session, &silence(500), now));
    out.extend(session.on_tick(now));
    let item_id = sent(&out)
        .iter()
        .rev()
        .find(|e| e["type"] == "response.output_audio.delta")
        .and_then(|e| e["item_id"].as_str().map(str::to_owned))
        .expect("the answer started");
    out.extend(append(&mut session, &loud(100), now));
    out.extend(session.on_client_event(r#"{"type":"response.cancel"}"#, now));
    for ms in [50, 5_000] {
        let truncate = json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": ms});
        out.extend(session.on_client_event(&truncate.to_string(), now));
    }
    out.extend(append(&mut session, &silence(500), now));
    run_out(&mut session, &mut now, &mut out);
    out.extend(session.on_client_event(r#"{"type":"input_audio_buffer.clear"}"#, now));

    // Assert: every kind of event the relay handles is there; then write them.
    let kinds = types(&out);
    for expected in [
        "session.created",
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio.delta",
        "response.output_audio_transcript.done",
        "conversation.item.truncated",
        "response.function_call_arguments.done",
        "response.done",
        "error",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} missing: {kinds:?}"
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CONFORMANCE_EVENTS);
    std::fs::create_dir_all(path.parent().expect("a parent"))
        .expect("target/conformance is writable");
    let lines: Vec<String> = sent(&out).iter().map(Value::to_string).collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("the events file is writable");
}
