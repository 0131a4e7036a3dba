//! Keypad tones out: the model presses a key in a phone menu; Twilio plays it between two media streams of the same
//! call (a call update), and the conversation goes on on the same Realtime session.

use std::time::Duration;

use callbridge::calls::{EndReason, Speaker};
use callbridge::simulate::{MediaStreamClient, Observation};

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fake_twilio::FakeTwilio;
use crate::helpers::{CALLER_HELLO, TestApp, fixture, spawn_app_with};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// A server whose model answers with `responses` and whose Twilio REST API is `twilio`.
async fn dtmf_app(twilio: &FakeTwilio, responses: Vec<ScriptedResponse>) -> TestApp {
    spawn_app_with(
        Script {
            responses,
            ..Script::default()
        },
        &[
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_API_BASE_URL", &twilio.url),
        ],
    )
    .await
}

/// The model's answer to a phone menu: the `send_dtmf` tool with the digit 1.
fn press_1() -> ScriptedResponse {
    ScriptedResponse::call_tool("send_dtmf", r#"{"digits":"1"}"#)
}

/// The recorded phone menu that asks the caller to press 1 (μ-law, 8 kHz).
fn menu_audio() -> Vec<u8> {
    std::fs::read(fixture("menu-press-1.ulaw")).expect("tests/fixtures/menu-press-1.ulaw")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_presses_1_in_a_menu_and_the_conversation_goes_on_on_a_new_stream_of_the_same_session()
 {
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"in-progress"}"#);
    let app = dtmf_app(
        &twilio,
        vec![
            press_1(),
            ScriptedResponse::speak(600, "Hello, I'd like to book a table for four at seven."),
        ],
    )
    .await;
    let menu = menu_audio();
    let webhook = app.webhook();
    let old_url = app.answer(&webhook).await;
    let old = MediaStreamClient::connect(&old_url)
        .await
        .expect("the first stream opens");
    old.start(&webhook.call_sid, &[])
        .await
        .expect("start is sent");

    // The menu speaks; the model answers with send_dtmf("1"); the relay updates the call.
    old.send_audio(&menu);
    let update = twilio
        .wait_for_call_update(0, Duration::from_secs(20))
        .await
        .expect("a call update");
    assert_eq!(
        update.request.path,
        format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{}.json",
            webhook.call_sid
        )
    );
    assert_eq!(update.play_digits().as_deref(), Some("1"));
    let (new, new_url) = twilio
        .play_call_update(&update, &old, &app.address, &webhook.call_sid)
        .await;
    assert_ne!(new_url, old_url, "a fresh token");
    assert_eq!(twilio.played_digits(), ["1"]);
    assert!(
        MediaStreamClient::connect(&old_url).await.is_err(),
        "the old stream token is refused"
    );

    // The person at reservations answers on the new stream; the assistant answers there.
    new.send_audio(&CALLER_HELLO);
    new.wait_for(
        |e| matches!(e.kind, Observation::Media { .. }),
        Duration::from_secs(20),
    )
    .await
    .expect("the assistant speaks on the new stream");
    new.stop().await;
    let record = app.record(&webhook.call_sid, Duration::from_secs(10)).await;
    app.fake.dump_for_conformance("send_dtmf");

    assert_eq!(
        app.fake.connections(),
        1,
        "one Realtime session for both streams"
    );
    assert_eq!(
        app.fake.events_of_type("session.update").len(),
        1,
        "nothing re-sent to the session"
    );
    let tool_output = app
        .fake
        .events_of_type("conversation.item.create")
        .into_iter()
        .find(|e| e["item"]["type"] == "function_call_output")
        .expect("the tool call was answered");
    assert!(
        tool_output["item"]["output"]
            .as_str()
            .unwrap_or("")
            .contains("\"ok\":true")
    );
    assert!(
        record
            .transcript
            .iter()
            .any(|t| t.speaker == Speaker::Action && t.text == "pressed 1"),
        "{:?}",
        record.transcript
    );
    assert_eq!(record.handovers.len(), 1);
    assert_eq!(record.handovers[0].cause, "dtmf");
    assert_eq!(
        record.handovers[0].stream_sid,
        new.stream_sid().expect("a StreamSid")
    );
    let gap_ms = record.handovers[0].gap_ms.expect("the gap was measured");
    println!("stream handover audio gap (loopback, fake Twilio): {gap_ms} ms");
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_streams_stop_does_not_end_a_call_that_awaits_its_next_stream() {
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"in-progress"}"#);
    let app = dtmf_app(&twilio, vec![press_1()]).await;
    let call = app.call().await;
    call.stream.send_audio(&CALLER_HELLO);
    twilio
        .wait_for_call_update(0, Duration::from_secs(20))
        .await
        .expect("a call update");

    call.stream.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(app.live_calls.count(), 1, "the call awaits its next stream");
    assert!(
        app.live_calls.is_live(&call.webhook.call_sid),
        "the call is still live, not finished"
    );
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_twilio_refuses_the_keypad_update_the_model_is_told_and_the_call_stays_on_its_stream()
{
    let twilio = FakeTwilio::start(
        400,
        r#"{"code":21220,"message":"Invalid call state for the update","status":400}"#,
    );
    let app = dtmf_app(&twilio, vec![press_1()]).await;
    let call = app.call().await;

    call.stream.send_audio(&menu_audio());
    twilio
        .wait_for_call_update(0, Duration::from_secs(20))
        .await
        .expect("the relay asked Twilio to press the key");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let told = loop {
        let told = app
            .fake
            .events_of_type("conversation.item.create")
            .into_iter()
            .any(|e| e.to_string().contains("keypad tones could not be sent"));
        if told || tokio::time::Instant::now() >= deadline {
            break told;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(told, "the model was told the key was not pressed");
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(10))
        .await;

    assert!(record.handovers.is_empty(), "{:?}", record.handovers);
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
}
