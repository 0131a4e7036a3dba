//! Calls longer than a Realtime session: the rollover to a second session before the (test-short) session limit, the
//! recovery of a session OpenAI closes mid-call, and the clean end of a call whose session cannot be reopened. The
//! fake's `close_after` plays OpenAI's session limit; `CALLBRIDGE_REALTIME_SESSION_LIMIT_S` is the relay's.

use std::time::Duration;

use callbridge::calls::{CallFailure, EndReason};
use callbridge::simulate::Observation;
use serde_json::Value;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{CALLER_INTERRUPT, TestCall, spawn_app_with};

const WAIT: Duration = Duration::from_secs(15);

/// The items of the `conversation.item.create` events `events` holds, in order.
fn created_items(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .map(|e| e["item"].clone())
        .collect()
}

/// The first text part of each item whose role is `role`.
fn texts_of(items: &[Value], role: &str) -> Vec<String> {
    items
        .iter()
        .filter(|i| i["role"] == role)
        .filter_map(|i| i["content"][0]["text"].as_str().map(str::to_owned))
        .collect()
}

/// Waits for assistant audio that arrived after `since`.
async fn audio_after(call: &TestCall, since: tokio::time::Instant, what: &str) {
    call.stream
        .wait_for_since(since, |e| matches!(e.kind, Observation::Media { .. }), WAIT)
        .await
        .unwrap_or_else(|| panic!("no assistant audio {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_session_limit_goes_on_in_a_second_session_seeded_with_the_instructions_and_recent_turns()
 {
    // Arrange: OpenAI's (fake) session limit is 10 s, the relay rolls over after 4 s (one exchange takes ~3 s).
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(600, "Sure, for how many people?")],
            caller_transcripts: vec!["I'd like a table.".into()],
            close_after: Some(Duration::from_secs(10)),
            close_code: 1001,
            ..Script::default()
        },
        &[("CALLBRIDGE_REALTIME_SESSION_LIMIT_S", "4")],
    )
    .await;
    let call = app.call().await;

    // Act: one exchange in the first session, the rollover, one exchange in the second.
    call.stream.send_audio(&CALLER_INTERRUPT);
    audio_after(&call, tokio::time::Instant::now(), "in the first session").await;
    app.fake
        .wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("the second session is seeded");
    let switched_at = tokio::time::Instant::now();
    call.stream.send_audio(&CALLER_INTERRUPT);
    audio_after(&call, switched_at, "from the second session").await;
    call.stream
        .wait_for_since(
            switched_at,
            |e| matches!(e.kind, Observation::PlaybackIdle { .. }),
            WAIT,
        )
        .await
        .expect("the second reply plays to its end");
    call.stream.stop().await;
    let record = app.record(&call.webhook.call_sid, WAIT).await;
    app.fake.dump_for_conformance("session_rollover");

    // Assert: two sessions, the second with the same session.update and the conversation so far.
    assert_eq!(app.fake.connections(), 2);
    let first = app.fake.client_events_of_connection(0);
    let second = app.fake.client_events_of_connection(1);
    assert_eq!(second[0]["type"], "session.update");
    assert_eq!(second[0]["session"], first[0]["session"], "same settings");
    assert!(
        second[0]["session"]["instructions"]
            .as_str()
            .is_some_and(|i| !i.is_empty())
    );
    let seed = created_items(&second);
    assert!(
        texts_of(&seed, "system")[0].contains("already in progress"),
        "{seed:?}"
    );
    assert_eq!(texts_of(&seed, "user"), ["I'd like a table."]);
    assert_eq!(texts_of(&seed, "assistant"), ["Sure, for how many people?"]);
    assert!(
        second
            .iter()
            .any(|e| e["type"] == "input_audio_buffer.append"),
        "the caller's audio goes to the second session"
    );
    // The relay closed the first session itself, well before the fake's limit.
    assert!(
        app.fake
            .wait_for_connection_closed(0, Duration::from_secs(1))
            .await
            .is_some()
    );
    // One call, one transcript running across both sessions, the rollover with its gap.
    let texts: Vec<&str> = record.transcript.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "I'd like a table.",
            "Sure, for how many people?",
            "I'd like a table.",
            "Sure, for how many people?"
        ]
    );
    assert_eq!(record.rollovers.len(), 1, "{:?}", record.rollovers);
    let rollover = &record.rollovers[0];
    assert_eq!(rollover.reason, "session_limit");
    assert!(rollover.at_s >= 4, "{rollover:?}");
    let gap_ms = rollover.gap_ms.expect("the gap is measured");
    eprintln!("session rollover gap: {gap_ms} ms");
    assert_eq!(
        record.end_reason.as_deref(),
        Some(EndReason::CallerHungUp.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_openai_closes_mid_call_is_reopened_and_the_assistant_apologises_and_goes_on() {
    // Arrange: every session closes (1011) 4.5 s after its session.update (one exchange takes ~3 s).
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(500, "Hello there.")],
            caller_transcripts: vec!["Hi.".into()],
            close_after: Some(Duration::from_millis(4500)),
            ..Script::default()
        },
        &[],
    )
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_INTERRUPT);
    audio_after(&call, tokio::time::Instant::now(), "before the close").await;

    // Act: the fake closes the first session.
    app.fake
        .wait_for_connection_closed(0, WAIT)
        .await
        .expect("the fake closes its first session");
    let closed_at = tokio::time::Instant::now();
    let apology = app
        .fake
        .wait_for_events("response.create", 1, WAIT)
        .await
        .expect("the new session is asked to speak");
    audio_after(&call, closed_at, "after the reopening").await;
    call.stream
        .wait_for_since(
            closed_at,
            |e| matches!(e.kind, Observation::PlaybackIdle { .. }),
            WAIT,
        )
        .await
        .expect("the apology plays to its end");
    call.stream.stop().await;
    let record = app.record(&call.webhook.call_sid, WAIT).await;
    app.fake.dump_for_conformance("session_reopened");

    // Assert
    assert_eq!(app.fake.connections(), 2);
    let second = app.fake.client_events_of_connection(1);
    assert_eq!(second[0]["type"], "session.update");
    let seed = created_items(&second);
    assert_eq!(texts_of(&seed, "user"), ["Hi."]);
    assert_eq!(texts_of(&seed, "assistant"), ["Hello there."]);
    assert!(
        texts_of(&seed, "system")
            .last()
            .is_some_and(|t| t.contains("Apologise")),
        "{seed:?}"
    );
    assert!(!apology.is_empty());
    assert_eq!(
        record.end_reason.as_deref(),
        Some(EndReason::CallerHungUp.to_string().as_str()),
        "the close did not end the call"
    );
    assert_eq!(record.rollovers.len(), 1, "{:?}", record.rollovers);
    assert_eq!(record.rollovers[0].reason, "session_closed");
    let gap_ms = record.rollovers[0].gap_ms.expect("the gap is measured");
    eprintln!("session reopened after a close, gap: {gap_ms} ms");
    let texts: Vec<&str> = record.transcript.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts[..2], ["Hi.", "Hello there."]);
    assert!(texts.len() >= 3, "the reopened session's words: {texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_be_reopened_ends_the_call_cleanly_with_its_record() {
    // Arrange: the first session closes after 4.5 s, and OpenAI refuses every new connection.
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(500, "Hello there.")],
            caller_transcripts: vec!["Hi.".into()],
            close_after: Some(Duration::from_millis(4500)),
            accept_connections: Some(1),
            ..Script::default()
        },
        &[("CALLBRIDGE_REALTIME_RECONNECT_ATTEMPTS", "2")],
    )
    .await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_INTERRUPT);

    // Act
    let closed = call.expect_hang_up(WAIT).await;
    let record = app.record(&call.webhook.call_sid, WAIT).await;

    // Assert: two refused attempts, then the call ended with its reason and its transcript.
    let upgrades = app.fake.upgrade_requests();
    assert_eq!(
        upgrades.iter().map(|u| u.accepted).collect::<Vec<_>>(),
        [true, false, false]
    );
    let reason = EndReason::Error(CallFailure::OpenAiReconnectFailed).to_string();
    assert_eq!(record.end_reason.as_deref(), Some(reason.as_str()));
    match closed.kind {
        Observation::Closed {
            code, reason: r, ..
        } => {
            assert_eq!(code, Some(1011));
            assert_eq!(r, reason);
        }
        other => panic!("{other:?}"),
    }
    let texts: Vec<&str> = record.transcript.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["Hi.", "Hello there."]);
    assert!(record.rollovers.is_empty());
    assert_eq!(app.live_calls.count(), 0);
}
