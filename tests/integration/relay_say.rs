//! Agent-in-the-loop calls: an outbound call placed with `mode: "relay"`, answered by a fake Twilio, where the agent
//! speaks through `say` and the callee answers with real recorded speech (espeak-ng fixtures).

use std::sync::LazyLock;
use std::time::Duration;

use callbridge::calls::Speaker;
use callbridge::calls::model::CallStatus;
use callbridge::calls::say::{CallMode, SayReport};
use callbridge::calls::service::{PlaceCall, SayCall, ServiceError};
use callbridge::simulate::{MediaStreamClient, Observation};

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fake_twilio::{FakeTwilio, Route};
use crate::helpers::{
    CALLER_HELLO, CALLER_INTERRUPT, TestApp, answer_outbound, fixture, outbound_env,
    outbound_twilio, spawn_app_with,
};

const CALL_SID: &str = "CA5a1e2d3c4b5a69788796a5b4c3d2e1f0";
const RESTAURANT: &str = "+14155552671";
/// The agent's line.
const LINE: &str = "Hi, this is Sam calling to book a table for four at seven tonight.";

/// Real recorded speech: the callee's answer, and its text (what the fake's transcription says).
static CALLEE_REPLY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(fixture("callee-reply.ulaw")).expect("tests/fixtures/callee-reply.ulaw")
});
static CALLEE_REPLY_TEXT: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string(fixture("callee-reply.txt"))
        .expect("tests/fixtures/callee-reply.txt")
        .trim()
        .to_owned()
});
static CALLER_INTERRUPT_TEXT: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string(fixture("caller-interrupt.txt"))
        .expect("tests/fixtures/caller-interrupt.txt")
        .trim()
        .to_owned()
});

/// A relay-mode call, answered, its media stream started.
struct RelayCall {
    app: TestApp,
    _twilio: FakeTwilio,
    stream: MediaStreamClient,
    id: String,
}

async fn answered_relay_call(script: Script) -> RelayCall {
    let twilio = outbound_twilio(CALL_SID);
    let app = spawn_app_with(script, &outbound_env(&twilio)).await;
    let placed = app
        .calls
        .place_call(PlaceCall {
            to: RESTAURANT.into(),
            instructions: "Booking a table for Rivera; speak warmly.".into(),
            mode: Some(CallMode::Relay),
            ..PlaceCall::default()
        })
        .await
        .expect("placed");
    assert_eq!(placed.mode, CallMode::Relay);
    let stream = answer_outbound(&app, &placed.id, CALL_SID).await;
    RelayCall {
        app,
        _twilio: twilio,
        stream,
        id: placed.id,
    }
}

/// Runs `say` in a task of its own (it returns only once the words were spoken and answered).
fn say_in_background(
    call: &RelayCall,
    request: SayCall,
) -> tokio::task::JoinHandle<Result<SayReport, ServiceError>> {
    let calls = call.app.calls.clone();
    let id = call.id.clone();
    actix_web::rt::spawn(async move { calls.say(&id, request).await })
}

async fn report_of(say: tokio::task::JoinHandle<Result<SayReport, ServiceError>>) -> SayReport {
    tokio::time::timeout(Duration::from_secs(40), say)
        .await
        .expect("say answers in time")
        .expect("the say task runs to its end")
        .expect("say succeeds")
}

#[actix_web::test]
async fn say_with_wait_for_reply_returns_the_callees_words_from_real_speech() {
    // Arrange: the voice speaks the line (1.5 s of audio); the callee answers with recorded speech.
    let call = answered_relay_call(Script {
        responses: vec![ScriptedResponse::speak(1_500, LINE)],
        caller_transcripts: vec![CALLEE_REPLY_TEXT.clone()],
        ..Script::default()
    })
    .await;

    // Act: the agent says its line and waits; once it has played, the callee answers.
    let say = say_in_background(
        &call,
        SayCall {
            text: LINE.into(),
            wait_for_reply: true,
            timeout_s: Some(20),
            hang_up_after: false,
        },
    );
    call.stream
        .wait_for(
            |e| matches!(e.kind, Observation::PlaybackIdle { .. }),
            Duration::from_secs(15),
        )
        .await
        .expect("the line plays to its end");
    call.stream.send_audio(&CALLEE_REPLY);
    let report = report_of(say).await;
    call.app.fake.dump_for_conformance("relay_say_reply");

    // Assert: the callee heard the whole line, and their words come back to the agent.
    assert_eq!(report.spoken, LINE);
    assert_eq!(report.heard_text, LINE);
    assert!(!report.interrupted, "{report:?}");
    assert_eq!(report.reply.as_deref(), Some(CALLEE_REPLY_TEXT.as_str()));
    assert!(!report.reply_timed_out && !report.call_ended, "{report:?}");
    // One response, the agent's, asked for with the line quoted in its instructions.
    let creates = call.app.fake.events_of_type("response.create");
    assert_eq!(creates.len(), 1, "{creates:?}");
    let instructions = creates[0]["response"]["instructions"]
        .as_str()
        .expect("instructions");
    assert!(instructions.contains(LINE), "{instructions}");
    // The transcript is the same record as for any call: the line, then the reply.
    call.app.calls.hang_up(&call.id).await.expect("hung up");
    let record = call
        .app
        .calls
        .get_call(&call.id, Some(10))
        .await
        .expect("the call");
    let turns: Vec<(Speaker, &str)> = record
        .transcript
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            (Speaker::Assistant, LINE),
            (Speaker::Caller, CALLEE_REPLY_TEXT.as_str())
        ]
    );
}

#[actix_web::test]
async fn a_barge_in_during_say_is_reported_to_the_agent_as_what_the_callee_heard() {
    // Arrange: a long line (8 s of audio) streamed only twice as fast as real time.
    let long_line = "Hi, this is Sam calling for the Rivera family about a table for four tonight, ideally at \
                     seven, by the window if you have one, and we would also like to ask about parking nearby";
    let call = answered_relay_call(Script {
        responses: vec![ScriptedResponse::speak(8_000, long_line)],
        caller_transcripts: vec![CALLER_INTERRUPT_TEXT.clone()],
        speed_up: 2.0,
        ..Script::default()
    })
    .await;
    let say = say_in_background(
        &call,
        SayCall {
            text: long_line.into(),
            wait_for_reply: true,
            timeout_s: Some(20),
            hang_up_after: false,
        },
    );
    call.stream
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            Duration::from_secs(15),
        )
        .await
        .expect("the line starts playing");

    // Act: two seconds in, the callee talks over it.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    call.stream.send_audio(&CALLER_INTERRUPT);
    let report = report_of(say).await;
    call.app.fake.dump_for_conformance("relay_say_barge_in");

    // Assert: the agent learns it was cut, what was heard of it, and what the callee said.
    assert!(report.interrupted, "{report:?}");
    let heard_words = report.heard_text.split_whitespace().count();
    let line_words = long_line.split_whitespace().count();
    assert!(
        heard_words > 0 && heard_words < line_words,
        "heard {heard_words} of {line_words} words: {report:?}"
    );
    let heard = report.heard_text.trim_end_matches(['.', ',', '…']);
    assert!(long_line.starts_with(heard), "{report:?}");
    assert_eq!(
        report.reply.as_deref(),
        Some(CALLER_INTERRUPT_TEXT.as_str())
    );
    // The relay cut the audio where the callee was: the same words as the record's interrupted turn.
    assert_eq!(
        call.app
            .fake
            .events_of_type("conversation.item.truncate")
            .len(),
        1
    );
    call.app.calls.hang_up(&call.id).await.expect("hung up");
    let record = call
        .app
        .calls
        .get_call(&call.id, Some(10))
        .await
        .expect("the call");
    let assistant = record
        .transcript
        .iter()
        .find(|t| t.speaker == Speaker::Assistant)
        .expect("the line's turn");
    assert!(assistant.interrupted);
    assert_eq!(assistant.text, report.heard_text);
}

#[actix_web::test]
async fn the_session_of_a_relay_call_does_not_create_responses_on_its_own() {
    // Arrange: a relay-mode call, and a callee who speaks first.
    let call = answered_relay_call(Script {
        responses: vec![ScriptedResponse::speak(500, "Okay.")],
        caller_transcripts: vec!["Hi, I'd like to book a table.".into()],
        ..Script::default()
    })
    .await;

    // Act: the callee speaks; the relay hears and transcribes it.
    call.stream.send_audio(&CALLER_HELLO);
    call.app
        .fake
        .wait_for_server_event(
            "conversation.item.input_audio_transcription.completed",
            Duration::from_secs(15),
        )
        .await
        .expect("the callee's words are transcribed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.app.fake.dump_for_conformance("relay_session");

    // Assert: server VAD without automatic responses, no tools, the relay instructions; nothing was said.
    let session = call.app.fake.last_session().expect("session.update");
    let turn = &session["audio"]["input"]["turn_detection"];
    assert_eq!(turn["type"], "server_vad", "{session}");
    assert_eq!(turn["create_response"], false, "{session}");
    assert_eq!(session["tools"], serde_json::json!([]), "{session}");
    let instructions = session["instructions"].as_str().expect("instructions");
    assert!(
        instructions.contains("you say exactly those words"),
        "{instructions}"
    );
    assert!(
        instructions.contains("Booking a table for Rivera"),
        "{instructions}"
    );
    assert!(call.app.fake.events_of_type("response.create").is_empty());
    assert!(
        call.app
            .fake
            .server_events_of_type("response.created")
            .is_empty()
    );
    let record = call.app.calls.get(&call.id).expect("the call");
    assert_eq!(record.status, CallStatus::InProgress);
    assert_eq!(record.mode, CallMode::Relay);
}

#[actix_web::test]
async fn say_on_a_call_not_placed_in_relay_mode_is_refused() {
    let twilio = FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        201,
        &format!(r#"{{"sid":"{CALL_SID}","status":"queued"}}"#),
    )]);
    let app = spawn_app_with(Script::default(), &outbound_env(&twilio)).await;
    let placed = app
        .calls
        .place_call(PlaceCall {
            to: RESTAURANT.into(),
            instructions: "Book a table.".into(),
            ..PlaceCall::default()
        })
        .await
        .expect("placed");

    let refused = app
        .calls
        .say(
            &placed.id,
            SayCall {
                text: "Hello.".into(),
                ..SayCall::default()
            },
        )
        .await;

    assert_eq!(placed.mode, CallMode::Autonomous);
    match refused {
        Err(ServiceError::InvalidRequest(message)) => {
            assert!(message.contains("relay"), "{message}")
        }
        other => panic!("expected invalid_request, got {other:?}"),
    }
}
