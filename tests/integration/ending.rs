//! Calls that end abruptly: the caller hangs up, OpenAI goes away, the maximum duration.

use std::time::{Duration, Instant};

use callbridge::calls::{CallFailure, EndReason, Speaker};
use callbridge::simulate::Observation;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_mid_reply_ends_the_call_and_keeps_what_was_heard() {
    let reply = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";
    let app = spawn_app(Script {
        responses: vec![ScriptedResponse::speak(8000, reply)],
        caller_transcripts: vec!["Tell me a long story.".into()],
        ..Script::default()
    })
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    call.expect("the reply to start", Duration::from_secs(15), |o| {
        matches!(o, Observation::Media { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let hung_up = Instant::now();
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(2))
        .await;
    assert!(
        hung_up.elapsed() < Duration::from_secs(1),
        "the call ended {:?} after the hang-up",
        hung_up.elapsed()
    );
    app.fake
        .wait_for_connection_closed(0, Duration::from_secs(1))
        .await
        .expect("the OpenAI socket closed within a second");
    app.fake.dump_for_conformance("caller_hangs_up");

    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
    assert_eq!(app.live_calls.count(), 0, "the call is no longer live");
    let assistant = record
        .transcript
        .iter()
        .find(|t| t.speaker == Speaker::Assistant)
        .expect("the assistant turn is kept");
    assert!(assistant.interrupted, "the turn is marked as cut");
    let words = assistant.text.split_whitespace().count();
    // About 2 s of 8 s were heard: a quarter of sixteen words, give or take.
    assert!(
        (2..=7).contains(&words),
        "kept {words} words: {:?}",
        assistant.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_closing_mid_call_ends_the_call_within_a_second_and_keeps_the_transcript() {
    // Without reopening attempts (tests/integration/rollover.rs has the call that goes on).
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(500, "Hello there.")],
            caller_transcripts: vec!["Hi.".into()],
            close_after: Some(Duration::from_millis(4500)),
            ..Script::default()
        },
        &[("CALLBRIDGE_REALTIME_RECONNECT_ATTEMPTS", "0")],
    )
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);

    let closed = call.expect_hang_up(Duration::from_secs(15)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(2))
        .await;
    app.fake.dump_for_conformance("openai_closes");

    let openai_closed_at = app
        .fake
        .connection_closed_at(0)
        .expect("the fake closed its socket");
    let lag = closed
        .at
        .into_std()
        .saturating_duration_since(openai_closed_at);
    assert!(
        lag < Duration::from_secs(1),
        "Twilio's side closed {lag:?} after OpenAI's"
    );
    assert_eq!(
        record.end_reason,
        Some(EndReason::Error(CallFailure::OpenAiClosed).to_string())
    );
    assert_eq!(record.transcript.len(), 2, "{:?}", record.transcript);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_ended_at_the_maximum_duration() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_MAX_CALL_DURATION_S", "1")],
    )
    .await;
    let call = app.call().await;

    call.expect_hang_up(Duration::from_secs(5)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(2))
        .await;

    assert_eq!(record.end_reason, Some(EndReason::MaxDuration.to_string()));
    assert!(
        record
            .duration_ms
            .is_some_and(|ms| (1000..2000).contains(&ms)),
        "{:?}",
        record.duration_ms
    );
}
