//! Tests of the Live ↔ conductor mapping.

use std::time::{Duration, Instant};

use super::*;

fn feed(t: &mut LiveTranslator, event: LiveServerEvent<'static>, now: Instant) -> Vec<String> {
    let mut out = Vec::new();
    t.on_server_event(event, now, &mut out);
    out.iter().map(|e| e.event_type().to_owned()).collect()
}

#[test]
fn the_first_audio_opens_a_turn_and_the_caller_speaking_closes_it_before_the_barge_in() {
    let mut t = LiveTranslator::new();
    let now = Instant::now();
    assert_eq!(
        feed(
            &mut t,
            LiveServerEvent::OutputAudioDelta { delta: "AAAA" },
            now
        ),
        ["response.created", "response.output_audio.delta"]
    );
    assert_eq!(
        feed(
            &mut t,
            LiveServerEvent::OutputAudioDelta { delta: "AAAA" },
            now
        ),
        ["response.output_audio.delta"]
    );
    assert_eq!(
        feed(
            &mut t,
            LiveServerEvent::InputTranscriptDelta {
                delta: "wait".into()
            },
            now
        ),
        [
            "response.output_audio.done",
            "response.done",
            "input_audio_buffer.speech_started"
        ]
    );
    assert_eq!(
        feed(
            &mut t,
            LiveServerEvent::OutputAudioDelta { delta: "AAAA" },
            now
        ),
        [
            "input_audio_buffer.speech_stopped",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
            "response.output_audio.delta"
        ]
    );
}

#[test]
fn a_quiet_model_ends_its_turn_after_the_gap_with_the_whole_transcript() {
    let mut t = LiveTranslator::new();
    let now = Instant::now();
    feed(
        &mut t,
        LiveServerEvent::OutputAudioDelta { delta: "AAAA" },
        now,
    );
    feed(
        &mut t,
        LiveServerEvent::OutputTranscriptDelta {
            delta: "Hello there.".into(),
        },
        now,
    );
    let mut out = Vec::new();
    t.on_tick(now + TURN_GAP - Duration::from_millis(1), &mut out);
    assert!(out.is_empty(), "not yet");
    t.on_tick(now + TURN_GAP, &mut out);
    let done = out
        .iter()
        .find_map(|e| match e {
            ServerEvent::OutputAudioTranscriptDone { transcript, .. } => Some(transcript.clone()),
            _ => None,
        })
        .expect("a transcript");
    assert_eq!(done, "Hello there.");
    assert!(t.deadline().is_none());
}

#[test]
fn a_function_call_during_the_farewell_belongs_to_the_farewell_turn() {
    let mut t = LiveTranslator::new();
    let now = Instant::now();
    feed(
        &mut t,
        LiveServerEvent::OutputAudioDelta { delta: "AAAA" },
        now,
    );
    let mut out = Vec::new();
    t.on_server_event(
        LiveServerEvent::FunctionCall {
            call_id: "c1".into(),
            name: "end_call".into(),
            arguments: "{}".into(),
        },
        now,
        &mut out,
    );
    assert!(matches!(
        &out[..],
        [ServerEvent::FunctionCallArgumentsDone { response_id, .. }] if response_id == "live_turn_1"
    ));
}

#[test]
fn client_events_become_live_events_or_nothing() {
    use crate::realtime::client_events::{ClientEvent, ConversationItem};
    let mut t = LiveTranslator::new();
    let mut out = Vec::new();
    t.client_event(
        &ClientEvent::InputAudioBufferAppend { audio: "AAEC" }.to_json(),
        &mut out,
    );
    t.client_event(
        &ClientEvent::ResponseCancel { response_id: None }.to_json(),
        &mut out,
    );
    t.client_event(
        &ClientEvent::ConversationItemCreate {
            item: ConversationItem::system_text("Greet the caller."),
        }
        .to_json(),
        &mut out,
    );
    t.client_event(
        &ClientEvent::ResponseCreate { response: None }.to_json(),
        &mut out,
    );
    t.client_event(
        &ClientEvent::ConversationItemCreate {
            item: ConversationItem::system_text("The caller is a VIP."),
        }
        .to_json(),
        &mut out,
    );
    t.flush(&mut out);
    t.client_event(
        &ClientEvent::ConversationItemCreate {
            item: ConversationItem::function_call_output("c1", "{\"ok\":true}"),
        }
        .to_json(),
        &mut out,
    );
    let types: Vec<String> = out
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(e).expect("json")["type"]
                .as_str()
                .expect("type")
                .to_owned()
        })
        .collect();
    assert_eq!(
        types,
        [
            "session.input_audio.append",
            "session.commentary.append",
            "session.instructions.append",
            "response.item.create",
            "response.create"
        ]
    );
}

#[test]
fn a_function_call_with_no_turn_open_comes_in_a_response_of_its_own() {
    let mut t = LiveTranslator::new();
    let mut out = Vec::new();
    t.on_server_event(
        LiveServerEvent::FunctionCall {
            call_id: "c1".into(),
            name: "end_call".into(),
            arguments: "{}".into(),
        },
        Instant::now(),
        &mut out,
    );
    let types: Vec<&str> = out.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.function_call_arguments.done",
            "response.done"
        ]
    );
}
