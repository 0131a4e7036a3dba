//! Answering machine detection on outbound calls, end to end: the call is created with Twilio's asynchronous AMD
//! fields, Twilio fetches the TwiML, the stream starts, and the signed AMD callback arrives (`human`,
//! `machine_end_beep` after a recorded greeting, `fax`, or none before the wait ends). The model stays silent until
//! the verdict; a voicemail is stored as such, never as a conversation.

use std::sync::LazyLock;
use std::time::Duration;

use callbridge::calls::model::CallView;
use callbridge::calls::service::PlaceCall;
use callbridge::simulate::{MediaStreamClient, Observation};
use callbridge::twilio::amd::{AnsweredBy, MachinePolicy};
use serde_json::Value;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fake_twilio::FakeTwilio;
use crate::helpers::{
    CALLER_HELLO, TestApp, answer_outbound, fixture, outbound_env, outbound_twilio, post_signed,
    server_closed, spawn_app_with,
};

const CALL_SID: &str = "CA22223333444455556666777788889999";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const RESTAURANT: &str = "+14155552671";
const VOICEMAIL_MESSAGE: &str =
    "This is Ada for Rivera: a table for four tonight at 7:30, please call back.";
const SPOKEN_MESSAGE: &str = "Hi, this is Ada calling for Rivera about a table for four tonight at 7:30. Please call us back. Thank you!";

/// espeak-ng: "Hi, you've reached Luigi's, leave a message after the tone", then a 1 kHz beep.
static VOICEMAIL_GREETING: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(fixture("voicemail-greeting.ulaw"))
        .expect("tests/fixtures/voicemail-greeting.ulaw")
});

fn fake_twilio() -> FakeTwilio {
    outbound_twilio(CALL_SID)
}

async fn app(twilio: &FakeTwilio, script: Script, extra: &[(&str, &str)]) -> TestApp {
    let mut env = outbound_env(twilio);
    env.extend_from_slice(extra);
    spawn_app_with(script, &env).await
}

fn booking(policy: MachinePolicy, greeting: Option<&str>) -> PlaceCall {
    PlaceCall {
        to: RESTAURANT.into(),
        instructions: "Book a table for 4 tonight at 7:30 under the name Rivera.".into(),
        greeting: greeting.map(str::to_owned),
        answering_machine: Some(policy),
        voicemail_message: Some(VOICEMAIL_MESSAGE.into()),
        ..PlaceCall::default()
    }
}

/// Twilio fetches the TwiML of the answered call and opens its stream; the stream has started.
async fn answer(app: &TestApp, call: &CallView) -> MediaStreamClient {
    answer_outbound(app, &call.id, CALL_SID).await
}

/// Twilio's AMD callback for the call, signed with `token` (the test auth token when `None`).
async fn verdict(app: &TestApp, call_id: &str, answered_by: &str, token: Option<&str>) -> u16 {
    post_signed(
        &app.address,
        &format!("/amd-status/{call_id}"),
        &[
            ("CallSid", CALL_SID),
            ("AccountSid", ACCOUNT_SID),
            ("AnsweredBy", answered_by),
            ("MachineDetectionDuration", "4210"),
        ],
        token,
        Some(&format!("amd-{answered_by}")),
    )
    .await
    .0
}

async fn closed_by_server(stream: &MediaStreamClient) {
    server_closed(stream, Duration::from_secs(20))
        .await
        .expect("the server ends the call");
}

/// The call once its record is written (`end_reason` set).
async fn finished(app: &TestApp, id: &str) -> CallView {
    for _ in 0..100 {
        let call = app.calls.get_call(id, None).await.expect("the call");
        if call.end_reason.is_some() {
            return call;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the call's record was never finished");
}

fn first_session_turn_detection(app: &TestApp) -> Value {
    app.fake.events_of_type("session.update")[0]["session"]["audio"]["input"]["turn_detection"]
        .clone()
}

fn assistant_media_count(stream: &MediaStreamClient) -> usize {
    stream
        .events()
        .iter()
        .filter(|e| matches!(e.kind, Observation::Media { .. }))
        .count()
}

#[actix_web::test]
async fn a_voicemail_is_left_only_after_the_beep_and_stored_as_a_voicemail() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        Script {
            responses: vec![ScriptedResponse::speak(1500, SPOKEN_MESSAGE)],
            caller_transcripts: vec![
                "Hi, you've reached Luigi's, leave a message after the tone.".into(),
            ],
            ..Script::default()
        },
        &[],
    )
    .await;
    let placed = app
        .calls
        .place_call(booking(
            MachinePolicy::LeaveMessage,
            Some("Hello, this is Ada."),
        ))
        .await
        .expect("placed");

    // Created with Twilio's asynchronous AMD, its callback on our signed route.
    let create = &twilio.requests()[0];
    let field = |name: &str| {
        create
            .form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        field("MachineDetection").as_deref(),
        Some("DetectMessageEnd")
    );
    assert_eq!(field("AsyncAmd").as_deref(), Some("true"));
    assert_eq!(
        field("AsyncAmdStatusCallback"),
        Some(format!("https://callbridge.test/amd-status/{}", placed.id))
    );
    assert_eq!(
        field("AsyncAmdStatusCallbackMethod").as_deref(),
        Some("POST")
    );
    assert_eq!(field("MachineDetectionTimeout").as_deref(), Some("30"));

    // The machine plays its greeting and beep; the model is held back (no greeting into the voicemail box).
    let stream = answer(&app, &placed).await;
    stream.send_audio(&VOICEMAIL_GREETING);
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::CallerAudioSent { .. }),
            Duration::from_secs(15),
        )
        .await
        .expect("the greeting and beep were played");
    app.fake
        .wait_for_event("input_audio_buffer.append", Duration::from_secs(2))
        .await
        .expect("the machine was heard");
    assert_eq!(first_session_turn_detection(&app)["create_response"], false);
    let before_verdict = app.fake.client_events();
    let media_before_verdict = assistant_media_count(&stream);

    assert_eq!(
        verdict(&app, &placed.id, "machine_end_beep", None).await,
        204
    );
    closed_by_server(&stream).await;
    let call = finished(&app, &placed.id).await;
    app.fake.dump_for_conformance("amd_voicemail");

    assert!(
        !before_verdict
            .iter()
            .any(|e| e["type"] == "response.create"),
        "no response.create before the verdict"
    );
    assert_eq!(
        media_before_verdict, 0,
        "no assistant audio before the verdict"
    );
    assert!(assistant_media_count(&stream) > 0, "the message was played");
    let events = app.fake.client_events();
    let off = events
        .iter()
        .position(|e| {
            e["type"] == "session.update"
                && e["session"]["audio"]["input"]["turn_detection"].is_null()
        })
        .expect("turn detection off for the message");
    let create = events
        .iter()
        .position(|e| e["type"] == "response.create")
        .expect("the message was asked for");
    assert!(off < create);
    assert_eq!(events[create]["response"]["tool_choice"], "none");
    let asked = events[create - 1]["item"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(asked.contains(VOICEMAIL_MESSAGE), "{asked}");
    assert_eq!(app.fake.events_of_type("response.create").len(), 1);
    // Stored as a voicemail, not a conversation.
    assert_eq!(call.end_reason.as_deref(), Some("voicemail_left"));
    assert_eq!(call.outcome, None);
    assert_eq!(
        call.answering.answering_machine,
        Some(MachinePolicy::LeaveMessage)
    );
    assert_eq!(call.answering.answered_by, Some(AnsweredBy::MachineEndBeep));
    assert!(call.answering.voicemail_left);
    assert_eq!(
        call.answering.voicemail_transcript.as_deref(),
        Some(SPOKEN_MESSAGE)
    );
}

#[actix_web::test]
async fn a_person_answering_gets_the_greeting_once_the_verdict_says_human() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        Script {
            responses: vec![ScriptedResponse::speak(800, "Hello, this is Ada.")],
            caller_transcripts: vec!["Hello, Luigi's?".into()],
            ..Script::default()
        },
        &[],
    )
    .await;
    let placed = app
        .calls
        .place_call(booking(MachinePolicy::HangUp, Some("Hello, this is Ada.")))
        .await
        .expect("placed");
    let stream = answer(&app, &placed).await;
    stream.send_audio(&CALLER_HELLO);
    app.fake
        .wait_for_server_event("input_audio_buffer.speech_stopped", Duration::from_secs(10))
        .await
        .expect("the person said hello");
    let before = app.fake.events_of_type("response.create").len();

    assert_eq!(verdict(&app, &placed.id, "human", None).await, 204);
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            Duration::from_secs(10),
        )
        .await
        .expect("the assistant greets the person");
    stream.stop().await;
    let call = finished(&app, &placed.id).await;
    app.fake.dump_for_conformance("amd_human");

    assert_eq!(before, 0, "nothing was said before the verdict");
    let updates = app.fake.events_of_type("session.update");
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(
        updates[1]["session"]["audio"]["input"]["turn_detection"]["create_response"],
        true
    );
    assert_eq!(call.end_reason.as_deref(), Some("caller_hung_up"));
    assert_eq!(call.answering.answered_by, Some(AnsweredBy::Human));
    assert!(!call.answering.voicemail_left);
}

#[actix_web::test]
async fn a_fax_is_hung_up_on_and_stored_as_machine_hung_up() {
    let twilio = fake_twilio();
    let app = app(&twilio, Script::default(), &[]).await;
    let placed = app
        .calls
        .place_call(booking(
            MachinePolicy::LeaveMessage,
            Some("Hello, this is Ada."),
        ))
        .await
        .expect("placed");
    let stream = answer(&app, &placed).await;

    assert_eq!(verdict(&app, &placed.id, "fax", None).await, 204);
    closed_by_server(&stream).await;
    let call = finished(&app, &placed.id).await;

    assert_eq!(call.end_reason.as_deref(), Some("machine_hung_up"));
    assert_eq!(call.answering.answered_by, Some(AnsweredBy::Fax));
    assert!(app.fake.events_of_type("response.create").is_empty());
    assert_eq!(assistant_media_count(&stream), 0);
}

#[actix_web::test]
async fn with_no_verdict_before_the_wait_ends_the_call_goes_on_as_a_conversation() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        Script {
            responses: vec![ScriptedResponse::speak(800, "Hello, this is Ada.")],
            ..Script::default()
        },
        &[("CALLBRIDGE_AMD_VERDICT_WAIT_S", "1")],
    )
    .await;
    let placed = app
        .calls
        .place_call(booking(
            MachinePolicy::LeaveMessage,
            Some("Hello, this is Ada."),
        ))
        .await
        .expect("placed");
    let stream = answer(&app, &placed).await;

    let greeted = stream
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            Duration::from_secs(10),
        )
        .await;
    stream.stop().await;
    let call = finished(&app, &placed.id).await;

    assert!(
        greeted.is_some(),
        "the assistant greets once the wait is over"
    );
    assert_eq!(call.end_reason.as_deref(), Some("caller_hung_up"));
    assert_eq!(call.answering.answered_by, None);
}

#[actix_web::test]
async fn a_forged_unknown_or_repeated_verdict_changes_nothing() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        Script {
            responses: vec![ScriptedResponse::speak(1500, SPOKEN_MESSAGE)],
            ..Script::default()
        },
        &[],
    )
    .await;
    let placed = app
        .calls
        .place_call(booking(MachinePolicy::LeaveMessage, None))
        .await
        .expect("placed");
    let stream = answer(&app, &placed).await;

    let forged = verdict(&app, &placed.id, "machine_end_beep", Some("wrong-token")).await;
    let unknown_id = verdict(&app, "call_doesnotexist", "machine_end_beep", None).await;
    let other_sid = post_signed(
        &app.address,
        &format!("/amd-status/{}", placed.id),
        &[
            ("CallSid", "CA00000000000000000000000000000000"),
            ("AnsweredBy", "human"),
        ],
        None,
        None,
    )
    .await
    .0;
    let after_refusals = app.calls.get_call(&placed.id, None).await.expect("call");
    let held = app.fake.events_of_type("response.create").is_empty();

    let first = verdict(&app, &placed.id, "machine_end_beep", None).await;
    let repeated = verdict(&app, &placed.id, "machine_end_beep", None).await;
    let contrary = verdict(&app, &placed.id, "human", None).await;
    closed_by_server(&stream).await;
    let call = finished(&app, &placed.id).await;

    assert_eq!((forged, unknown_id, other_sid), (403, 404, 404));
    assert_eq!(
        after_refusals.answering.answered_by, None,
        "refused verdicts change nothing"
    );
    assert!(held, "the model is still held back after refused verdicts");
    assert_eq!((first, repeated, contrary), (204, 204, 204));
    assert_eq!(call.answering.answered_by, Some(AnsweredBy::MachineEndBeep));
    assert_eq!(
        app.fake.events_of_type("response.create").len(),
        1,
        "one message only"
    );
    assert_eq!(call.end_reason.as_deref(), Some("voicemail_left"));
}

#[actix_web::test]
async fn a_call_with_ignore_is_created_without_detection() {
    let twilio = fake_twilio();
    let app = app(&twilio, Script::default(), &[]).await;

    app.calls
        .place_call(booking(MachinePolicy::Ignore, None))
        .await
        .expect("placed");

    let create = &twilio.requests()[0];
    assert!(
        !create
            .form
            .iter()
            .any(|(k, _)| k.starts_with("MachineDetection") || k.starts_with("AsyncAmd")),
        "{:?}",
        create.form
    );
}
