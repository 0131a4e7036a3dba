//! A whole inbound call carrying real recorded speech.

use std::time::Duration;

use callbridge::calls::{EndReason, Speaker};
use callbridge::simulate::Observation;
use serde_json::Value;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, spawn_app, spawn_app_with};

const REPLY: &str = "Sure, a table for four at seven tonight. Anything else?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbound_call_relays_recorded_speech_both_ways_and_keeps_the_transcript() {
    // Arrange
    let app = spawn_app(Script {
        responses: vec![ScriptedResponse::speak(1500, REPLY)],
        caller_transcripts: vec![
            "Hi, I'd like to book a table for four at seven tonight, please.".into(),
        ],
        ..Script::default()
    })
    .await;

    // Act: the caller speaks, the assistant answers, the caller hangs up after hearing it.
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect(
        "the reply to play out",
        Duration::from_secs(15),
        |o| matches!(o, Observation::PlaybackIdle { played_ms } if *played_ms >= 1500),
    )
    .await;
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    app.fake.dump_for_conformance("full_inbound_call");

    // Assert: the caller's audio reached OpenAI byte for byte.
    let appended: Vec<u8> = app
        .fake
        .events_of_type("input_audio_buffer.append")
        .iter()
        .flat_map(|e| decode_b64(e["audio"].as_str().expect("audio is a string")))
        .collect();
    assert!(
        appended
            .windows(CALLER_HELLO.len())
            .any(|w| w == CALLER_HELLO.as_slice()),
        "the recorded speech must arrive unchanged inside the appended audio"
    );
    // The assistant's audio reached the caller in full, and every mark was echoed as played.
    assert_eq!(call.assistant_ms_received(), 1500);
    let events = call.stream.events();
    let marks_sent = events
        .iter()
        .filter(|e| matches!(e.kind, Observation::Mark { .. }))
        .count();
    let echoed_played = events
        .iter()
        .filter(|e| matches!(e.kind, Observation::MarkEchoed { stale: false, .. }))
        .count();
    assert!(marks_sent > 0);
    assert_eq!(marks_sent, echoed_played);
    // The record: caller turn then assistant turn, ended by the caller.
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
    let turns: Vec<(Speaker, &str)> = record
        .transcript
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        turns,
        vec![
            (
                Speaker::Caller,
                "Hi, I'd like to book a table for four at seven tonight, please."
            ),
            (Speaker::Assistant, REPLY)
        ]
    );
    assert!(
        record.usage.total_tokens > 0,
        "usage from response.done is summed"
    );
    assert!(
        record
            .stream_sid
            .as_deref()
            .is_some_and(|s| s.starts_with("MZ"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_opened_before_the_stream_starts_with_the_ga_shape() {
    let app = spawn_app(Script::default()).await;
    let webhook = app.webhook();

    // Act: only the webhook; no media stream yet.
    let _url = app.answer(&webhook).await;

    // Assert: the pre-connect already configured the session.
    let update = app
        .fake
        .wait_for_event("session.update", Duration::from_secs(5))
        .await
        .expect("session.update sent before the stream opens");
    let session = &update["session"];
    assert_eq!(session["type"], "realtime");
    assert_eq!(session["audio"]["input"]["format"]["type"], "audio/pcmu");
    assert_eq!(session["audio"]["output"]["format"]["type"], "audio/pcmu");
    assert_eq!(session["tools"][0]["name"], "end_call");
    let request = &app.fake.upgrade_requests()[0];
    assert!(
        request.path_and_query.contains("model="),
        "{}",
        request.path_and_query
    );
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer sk-test-key")
    );
    assert!(!request.headers.iter().any(|(k, _)| k == "openai-beta"));
    app.fake.dump_for_conformance("preconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistant_greets_first_when_configured() {
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(
                600,
                "Hello! How can I help you today?",
            )],
            ..Script::default()
        },
        &[
            ("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "true"),
            ("CALLBRIDGE_GREETING", "Hi, Rivera's kitchen."),
        ],
    )
    .await;

    let call = app.call().await;
    call.expect(
        "the greeting to play",
        Duration::from_secs(10),
        |o| matches!(o, Observation::PlaybackIdle { played_ms } if *played_ms >= 600),
    )
    .await;

    let created = app.fake.events_of_type("conversation.item.create");
    let text = created[0]["item"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("Hi, Rivera's kitchen."), "{text}");
    assert_eq!(app.fake.events_of_type("response.create").len(), 1);
    call.stream.stop().await;
    app.fake.dump_for_conformance("greeting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypress_reaches_the_model_as_text() {
    let app = spawn_app(Script::default()).await;
    let call = app.call().await;

    call.stream.send_dtmf('3').await;

    let event = app
        .fake
        .wait_for_event("conversation.item.create", Duration::from_secs(5))
        .await
        .expect("the DTMF digit is passed on");
    assert_eq!(event["item"]["role"], "user");
    assert_eq!(event["item"]["content"][0]["text"], "The caller pressed 3");
    call.stream.stop().await;
    app.fake.dump_for_conformance("dtmf");
}

fn decode_b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64")
}

#[allow(unused)]
fn type_of(event: &Value) -> &str {
    event["type"].as_str().unwrap_or_default()
}
