//! Outbound calls: placed through the call service, dialled by a fake Twilio, answered, relayed, ended by the model's
//! `end_call{outcome}`, and read back with their status, transcript and outcome.

use std::time::Duration;

use callbridge::calls::model::CallStatus;
use callbridge::calls::service::{PlaceCall, ServiceError};
use callbridge::simulate::{
    MediaStreamClient, Observation, local_stream_url, parse_connect_stream,
};

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fake_twilio::{FakeTwilio, Route};
use crate::helpers::{
    CALLER_HELLO, TestApp, answer_outbound, outbound_env, outbound_twilio, post_signed,
    server_closed, spawn_app_with,
};

const CALL_SID: &str = "CA11112222333344445555666677778888";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const OUR_NUMBER: &str = "+14155550100";
const RESTAURANT: &str = "+14155552671";

fn fake_twilio() -> FakeTwilio {
    outbound_twilio(CALL_SID)
}

async fn app(twilio: &FakeTwilio, script: Script) -> TestApp {
    spawn_app_with(script, &outbound_env(twilio)).await
}

fn booking() -> PlaceCall {
    PlaceCall {
        to: RESTAURANT.into(),
        instructions:
            "Book a table for 4 tonight at 7:30 under the name Rivera; ask about a window seat."
                .into(),
        ..PlaceCall::default()
    }
}

async fn status(app: &TestApp, status: &str, idempotency_token: &str) -> u16 {
    post_signed(
        &app.address,
        "/call-status",
        &[
            ("CallSid", CALL_SID),
            ("AccountSid", ACCOUNT_SID),
            ("CallStatus", status),
        ],
        None,
        Some(idempotency_token),
    )
    .await
    .0
}

#[actix_web::test]
async fn an_outbound_call_is_placed_answered_relayed_and_ends_with_its_outcome() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        Script {
            responses: vec![
                ScriptedResponse::call_tool(
                    "end_call",
                    r#"{"outcome":"Booked 4 at 19:30 under Rivera; no window seat available."}"#,
                ),
                ScriptedResponse::speak(800, "Thank you, goodbye!"),
            ],
            caller_transcripts: vec!["Hello, Luigi's, how can I help?".into()],
            ..Script::default()
        },
    )
    .await;

    // place_call → Twilio is asked to dial.
    let placed = app.calls.place_call(booking()).await.expect("placed");
    assert_eq!(placed.status, CallStatus::Queued);
    assert_eq!(placed.call_sid.as_deref(), Some(CALL_SID));
    let create = &twilio.requests()[0];
    let form = |name: &str| {
        create
            .form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(form("To"), [RESTAURANT]);
    assert_eq!(form("From"), [OUR_NUMBER]);
    assert_eq!(
        form("Url"),
        [format!(
            "https://callbridge.test/outbound-call/{}",
            placed.id
        )]
    );
    assert_eq!(
        form("StatusCallback"),
        ["https://callbridge.test/call-status"]
    );
    assert_eq!(
        form("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );

    // Twilio reports progress, then fetches the TwiML when the callee answers.
    assert_eq!(status(&app, "initiated", "idem-1").await, 204);
    assert_eq!(status(&app, "ringing", "idem-2").await, 204);
    let stream = answer_outbound(&app, &placed.id, CALL_SID).await;
    stream.send_audio(&CALLER_HELLO);
    server_closed(&stream, Duration::from_secs(20))
        .await
        .expect("the model ends the call");
    assert_eq!(status(&app, "completed", "idem-3").await, 204);
    let call = app
        .calls
        .get_call(&placed.id, Some(5))
        .await
        .expect("the call");
    app.fake.dump_for_conformance("outbound_call");

    // The session carried this call's instructions, knowing it is the caller, with end_call taking an outcome.
    let session = app.fake.last_session().expect("session.update");
    let instructions = session["instructions"].as_str().expect("instructions");
    assert!(
        instructions.contains("Book a table for 4 tonight at 7:30 under the name Rivera"),
        "{instructions}"
    );
    assert!(
        instructions.contains("You placed this phone call"),
        "{instructions}"
    );
    assert!(
        session["tools"][0]["parameters"]["properties"]["outcome"].is_object(),
        "{session}"
    );
    // Without a greeting the model waited for the callee: no response.create before the callee spoke.
    assert_eq!(
        app.fake.events_of_type("conversation.item.create")[0]["item"]["type"],
        "function_call_output"
    );
    // The record.
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(
        call.outcome.as_deref(),
        Some("Booked 4 at 19:30 under Rivera; no window seat available.")
    );
    assert_eq!(call.end_reason.as_deref(), Some("goodbye"));
    let statuses: Vec<CallStatus> = call.status_timeline.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            CallStatus::Queued,
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed
        ]
    );
    let texts: Vec<&str> = call.transcript.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        ["Hello, Luigi's, how can I help?", "Thank you, goodbye!"]
    );
    // And the call was hung up at Twilio too (just after its record was stored).
    let hung_up = |twilio: &FakeTwilio| {
        twilio.requests().iter().any(|r| {
            r.path.ends_with(&format!("/Calls/{CALL_SID}.json"))
                && r.form.contains(&("Status".into(), "completed".into()))
        })
    };
    for _ in 0..50 {
        if hung_up(&twilio) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hung_up(&twilio), "{:?}", twilio.requests());
}

#[actix_web::test]
async fn busy_and_no_answer_end_as_such_with_no_stream() {
    for outcome in ["busy", "no-answer"] {
        let twilio = fake_twilio();
        let app = app(&twilio, Script::default()).await;
        let placed = app.calls.place_call(booking()).await.expect("placed");

        assert_eq!(status(&app, "initiated", "a").await, 204);
        assert_eq!(status(&app, "ringing", "b").await, 204);
        assert_eq!(status(&app, outcome, "c").await, 204);

        let call = app
            .calls
            .get_call(&placed.id, None)
            .await
            .expect("the call");
        assert_eq!(call.status.to_string(), outcome);
        assert!(call.transcript.is_empty());
        assert_eq!(
            app.fake.connections(),
            0,
            "no Realtime session for a call nobody answered"
        );
    }
}

#[actix_web::test]
async fn get_call_with_wait_s_answers_as_soon_as_the_status_changes() {
    let twilio = fake_twilio();
    let app = app(&twilio, Script::default()).await;
    let placed = app.calls.place_call(booking()).await.expect("placed");

    let waiting = {
        let calls = app.calls.clone();
        let id = placed.id.clone();
        tokio::spawn(async move { calls.get_call(&id, Some(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&app, "ringing", "r").await, 204);
    let call = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered well before wait_s")
        .expect("task")
        .expect("call");

    assert_eq!(call.status, CallStatus::Ringing);
}

#[actix_web::test]
async fn a_retried_status_callback_changes_nothing() {
    let twilio = fake_twilio();
    let app = app(&twilio, Script::default()).await;
    let placed = app.calls.place_call(booking()).await.expect("placed");

    assert_eq!(status(&app, "ringing", "same-token").await, 204);
    assert_eq!(status(&app, "ringing", "same-token").await, 204);
    assert_eq!(status(&app, "initiated", "late-token").await, 204);

    let call = app.calls.get_call(&placed.id, None).await.expect("call");
    let statuses: Vec<CallStatus> = call.status_timeline.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [CallStatus::Queued, CallStatus::Ringing],
        "a retry and an out-of-order callback change nothing"
    );
}

#[actix_web::test]
async fn outbound_webhooks_are_signed_and_unknown_calls_are_404() {
    let twilio = fake_twilio();
    let app = app(&twilio, Script::default()).await;
    let placed = app.calls.place_call(booking()).await.expect("placed");
    let path = format!("/outbound-call/{}", placed.id);
    let answer = [("CallSid", CALL_SID), ("CallStatus", "in-progress")];

    let forged_answer = post_signed(&app.address, &path, &answer, Some("wrong-token"), None)
        .await
        .0;
    let forged_status = post_signed(
        &app.address,
        "/call-status",
        &[("CallSid", CALL_SID), ("CallStatus", "completed")],
        Some("wrong-token"),
        None,
    )
    .await
    .0;
    let unknown = post_signed(
        &app.address,
        "/outbound-call/call_doesnotexist",
        &answer,
        None,
        None,
    )
    .await
    .0;

    assert_eq!(forged_answer, 403);
    assert_eq!(forged_status, 403);
    assert_eq!(unknown, 404);
    assert_eq!(
        app.calls
            .get_call(&placed.id, None)
            .await
            .expect("call")
            .status,
        CallStatus::Queued
    );
}

#[actix_web::test]
async fn a_bad_number_or_a_twilio_error_is_a_clear_error() {
    let twilio = FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        400,
        r#"{"code":21219,"message":"The number +14155552671 is unverified. Trial accounts cannot call unverified numbers.","status":400}"#,
    )]);
    let app = app(&twilio, Script::default()).await;

    let bad = app
        .calls
        .place_call(PlaceCall {
            to: "555-0100".into(),
            ..booking()
        })
        .await;
    let refused = app.calls.place_call(booking()).await;

    assert!(
        matches!(bad, Err(ServiceError::InvalidNumber(ref m)) if m.contains("E.164")),
        "{bad:?}"
    );
    assert!(
        matches!(refused, Err(ServiceError::Twilio { code: Some(21219), ref message }) if message.contains("unverified")),
        "{refused:?}"
    );
    assert_eq!(
        twilio.requests().len(),
        1,
        "the bad number never reached Twilio"
    );
    let stored = app.calls.list_calls(10).expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, CallStatus::Failed);
}

#[actix_web::test]
async fn a_stream_that_drops_mid_call_keeps_its_transcript_so_far() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        Script {
            responses: vec![ScriptedResponse::speak(
                500,
                "Hi, I'm calling to book a table.",
            )],
            caller_transcripts: vec!["Hello?".into()],
            close_after: Some(Duration::from_millis(4500)),
            // OpenAI cannot be reached again: the call cannot reopen its session.
            accept_connections: Some(1),
            ..Script::default()
        },
    )
    .await;
    let placed = app.calls.place_call(booking()).await.expect("placed");
    let path = format!("/outbound-call/{}", placed.id);
    let (_, twiml) = post_signed(
        &app.address,
        &path,
        &[("CallSid", CALL_SID), ("CallStatus", "in-progress")],
        None,
        None,
    )
    .await;
    let url = parse_connect_stream(&twiml)
        .expect("TwiML")
        .expect("stream")
        .url;
    let stream = MediaStreamClient::connect(&local_stream_url(&url, &app.address).expect("url"))
        .await
        .expect("stream");
    stream.start(CALL_SID, &[]).await.expect("start");
    stream.send_audio(&CALLER_HELLO);

    stream
        .wait_for(
            |e| matches!(e.kind, Observation::Closed { .. }),
            Duration::from_secs(15),
        )
        .await
        .expect("the call drops");
    let call = app.calls.get_call(&placed.id, Some(3)).await.expect("call");

    let texts: Vec<&str> = call.transcript.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["Hello?", "Hi, I'm calling to book a table."]);
    assert_eq!(
        call.end_reason.as_deref(),
        Some("error:openai_reconnect_failed")
    );
}
