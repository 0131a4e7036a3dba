//! Ending a call by goodbye: the `end_call` tool, the phrase fallback, and barge-in during the farewell.

use std::time::Duration;

use callbridge::calls::EndReason;
use callbridge::simulate::Observation;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_HELLO, CALLER_INTERRUPT, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_hangs_up_only_after_the_farewell_has_played() {
    let app = spawn_app(Script {
        responses: vec![
            ScriptedResponse::call_tool("end_call", r#"{"outcome":"Booked 4 at 19:00"}"#),
            ScriptedResponse::speak(1200, "Goodbye, enjoy your dinner!"),
        ],
        ..Script::default()
    })
    .await;

    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    let closed = call.expect_hang_up(Duration::from_secs(20)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    app.fake.dump_for_conformance("end_call");

    // The farewell had played out entirely when the stream was closed.
    let events = call.stream.events();
    let idle = events
        .iter()
        .find(|e| matches!(e.kind, Observation::PlaybackIdle { played_ms } if played_ms >= 1200))
        .expect("the farewell played out");
    assert!(
        idle.at <= closed.at,
        "hung up before the farewell finished playing"
    );
    assert_eq!(call.assistant_ms_received(), 1200);
    // The tool call was answered before the farewell was requested.
    let sent: Vec<String> = app
        .fake
        .client_events()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .filter(|t| t == "conversation.item.create" || t == "response.create")
        .collect();
    assert_eq!(sent, ["conversation.item.create", "response.create"]);
    assert_eq!(
        app.fake.events_of_type("conversation.item.create")[0]["item"]["type"],
        "function_call_output"
    );
    assert_eq!(record.end_reason, Some(EndReason::Goodbye.to_string()));
    assert_eq!(record.outcome.as_deref(), Some("Booked 4 at 19:00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_during_the_farewell_cancels_the_hang_up() {
    let app = spawn_app_with(
        Script {
            responses: vec![
                ScriptedResponse::call_tool("end_call", "{}"),
                ScriptedResponse::speak(
                    4000,
                    "Alright, thank you for calling and have a lovely evening. Goodbye!",
                ),
                ScriptedResponse::speak(600, "Of course, what else?"),
            ],
            caller_transcripts: vec!["That's all.".into(), "Wait, one more thing.".into()],
            ..Script::default()
        },
        &[("CALLBRIDGE_FAREWELL_GRACE_MS", "300")],
    )
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    // The farewell starts playing; one second in, the caller speaks up.
    call.expect("the farewell to start", Duration::from_secs(15), |o| {
        matches!(o, Observation::Media { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    call.stream.send_audio(&CALLER_INTERRUPT);
    call.expect("the farewell to be cleared", Duration::from_secs(5), |o| {
        matches!(o, Observation::Clear { .. })
    })
    .await;

    // The assistant answers the caller, and the line stays open well past the farewell's end plus the grace.
    call.expect(
        "the reply to the interruption",
        Duration::from_secs(10),
        |o| matches!(o, Observation::PlaybackIdle { .. }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        !call
            .stream
            .events()
            .iter()
            .any(|e| matches!(e.kind, Observation::Closed { .. })),
        "the hang-up should have been cancelled by the barge-in"
    );
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    app.fake.dump_for_conformance("farewell_barge_in");
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_phrase_ends_the_call_after_the_reply_has_played() {
    let app = spawn_app(Script {
        responses: vec![ScriptedResponse::speak(900, "You're welcome. Goodbye!")],
        ..Script::default()
    })
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);

    let closed = call.expect_hang_up(Duration::from_secs(20)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;
    app.fake.dump_for_conformance("goodbye_phrase");

    let idle = call
        .stream
        .events()
        .into_iter()
        .find(|e| matches!(e.kind, Observation::PlaybackIdle { played_ms } if played_ms >= 900))
        .expect("the reply played out");
    assert!(idle.at <= closed.at);
    assert_eq!(record.end_reason, Some(EndReason::Goodbye.to_string()));
}
