//! Call recording: an outbound call placed with `record` asks Twilio for a dual-channel recording with a signed
//! callback and hears the consent line first; an inbound call starts its recording in TwiML; the signed recording
//! status callback stores the recording with the call (a forged one is refused); the retention job deletes the
//! recording at the fake Twilio once its (test-short) retention ran out, also across a restart of the server.

use std::time::Duration;

use callbridge::calls::model::CallView;
use callbridge::calls::service::PlaceCall;
use serde_json::Value;

use crate::fake_realtime::{FakeRealtime, Script};
use crate::fake_twilio::{FakeTwilio, Route};
use crate::helpers::{AUTH_TOKEN, PUBLIC_URL, TestApp, post_signed, spawn_app_with, spawn_binary};

const CALL_SID: &str = "CA5555666677778888999900001111aaaa";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const RECORDING_SID: &str = "RE0123456789abcdef0123456789abcdef";
const OUR_NUMBER: &str = "+14155550100";
const SHOP: &str = "+14155552671";
const API_KEY: &str = "recording-test-api-key";

/// A fake Twilio that creates calls as `CALL_SID`, takes call updates and deletes recordings.
fn fake_twilio() -> FakeTwilio {
    FakeTwilio::start_routes(vec![
        Route::new(
            "POST",
            "/Calls.json",
            201,
            &format!(r#"{{"sid":"{CALL_SID}","status":"queued"}}"#),
        ),
        Route::new("POST", &format!("/Calls/{CALL_SID}.json"), 200, "{}"),
        Route::new(
            "DELETE",
            &format!("/Recordings/{RECORDING_SID}.json"),
            204,
            "",
        ),
    ])
}

async fn app(twilio: &FakeTwilio, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_PHONE_NUMBER", OUR_NUMBER),
        ("TWILIO_API_BASE_URL", twilio.url.as_str()),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(Script::default(), &env).await
}

fn order() -> PlaceCall {
    PlaceCall {
        to: SHOP.into(),
        instructions: "Ask whether the order for Rivera is ready.".into(),
        ..PlaceCall::default()
    }
}

/// The id of the call `call_sid` once its webhook stored it (within 5 s).
async fn stored_id(app: &TestApp, call_sid: &str) -> String {
    for _ in 0..250 {
        if let Some(call) = app.stored(call_sid) {
            return call.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the call {call_sid} was not stored");
}

/// Waits up to `timeout` for the call `id` to satisfy `done`, reading it through the call service.
async fn wait_for(
    app: &TestApp,
    id: &str,
    timeout: Duration,
    done: impl Fn(&CallView) -> bool,
) -> CallView {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let call = app.calls.get(id).expect("the call is stored");
        if done(&call) || tokio::time::Instant::now() >= deadline {
            return call;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn an_outbound_call_placed_with_record_asks_twilio_for_a_dual_channel_recording_with_its_callback()
 {
    let twilio = fake_twilio();
    let app = app(&twilio, &[]).await;

    let plain = app.calls.place_call(order()).await.expect("placed");
    let recorded = app
        .calls
        .place_call(PlaceCall {
            record: Some(true),
            ..order()
        })
        .await
        .expect("placed");

    assert!(!plain.record);
    assert!(twilio.form_values(0, "Record").is_empty());
    assert!(twilio.form_values(0, "RecordingStatusCallback").is_empty());
    assert!(recorded.record);
    assert_eq!(twilio.form_values(1, "Record"), ["true"]);
    assert_eq!(twilio.form_values(1, "RecordingChannels"), ["dual"]);
    assert_eq!(
        twilio.form_values(1, "RecordingStatusCallback"),
        [format!("{PUBLIC_URL}/recording-status/{}", recorded.id)]
    );
    assert_eq!(
        twilio.form_values(1, "RecordingStatusCallbackMethod"),
        ["POST"]
    );
    assert_eq!(
        twilio.form_values(1, "RecordingStatusCallbackEvent"),
        ["completed", "absent"]
    );
}

#[actix_web::test]
async fn recording_on_by_default_records_outbound_calls_unless_place_call_says_no() {
    let twilio = fake_twilio();
    let app = app(&twilio, &[("CALLBRIDGE_RECORDING", "on")]).await;

    let by_default = app.calls.place_call(order()).await.expect("placed");
    let refused = app
        .calls
        .place_call(PlaceCall {
            record: Some(false),
            ..order()
        })
        .await
        .expect("placed");

    assert!(by_default.record);
    assert_eq!(twilio.form_values(0, "Record"), ["true"]);
    assert!(!refused.record);
    assert!(twilio.form_values(1, "Record").is_empty());
}

#[actix_web::test]
async fn a_recorded_outbound_call_hears_the_consent_line_before_its_stream() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        &[(
            "CALLBRIDGE_RECORDING_CONSENT_MESSAGE",
            "This call is recorded for Rivera's order.",
        )],
    )
    .await;
    let placed = app
        .calls
        .place_call(PlaceCall {
            record: Some(true),
            ..order()
        })
        .await
        .expect("placed");

    let (status, twiml) = post_signed(
        &app.address,
        &format!("/outbound-call/{}", placed.id),
        &[
            ("CallSid", CALL_SID),
            ("AccountSid", ACCOUNT_SID),
            ("CallStatus", "in-progress"),
            ("Direction", "outbound-api"),
        ],
        None,
        None,
    )
    .await;

    assert_eq!(status, 200, "{twiml}");
    let say = twiml
        .find("<Say>This call is recorded for Rivera&apos;s order.</Say>")
        .or_else(|| twiml.find("<Say>This call is recorded for Rivera's order.</Say>"));
    let connect = twiml.find("<Connect>");
    assert!(
        matches!((say, connect), (Some(say), Some(connect)) if say < connect),
        "{twiml}"
    );
    // Twilio records an outbound call from its create request: no second recording in TwiML.
    assert!(!twiml.contains("<Recording"), "{twiml}");
}

#[actix_web::test]
async fn an_inbound_call_with_recording_on_starts_a_dual_channel_recording_then_says_the_notice_then_streams()
 {
    let twilio = fake_twilio();
    let app = app(&twilio, &[("CALLBRIDGE_RECORDING_INBOUND", "on")]).await;
    let webhook = app.webhook();

    let answer = webhook.post_incoming().await.expect("answered");
    let call = stored_id(&app, &webhook.call_sid).await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    let twiml = answer.body;
    let start = twiml
        .find("<Start><Recording ")
        .expect("a <Start><Recording>");
    let say = twiml
        .find("<Say>This call is recorded.</Say>")
        .expect("the notice");
    let connect = twiml.find("<Connect>").expect("the stream");
    assert!(start < say && say < connect, "{twiml}");
    assert!(twiml.contains(r#"channels="dual""#), "{twiml}");
    assert!(
        twiml.contains(&format!(
            r#"recordingStatusCallback="{PUBLIC_URL}/recording-status/{call}""#
        )),
        "{twiml}"
    );
    assert!(
        twiml.contains(r#"recordingStatusCallbackEvent="completed absent""#),
        "{twiml}"
    );
    assert!(answer.stream.is_some(), "the stream still opens: {twiml}");
}

#[actix_web::test]
async fn an_inbound_call_is_not_recorded_by_default() {
    let twilio = fake_twilio();
    let app = app(&twilio, &[]).await;
    let webhook = app.webhook();

    let answer = webhook.post_incoming().await.expect("answered");

    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!answer.body.contains("<Recording"), "{}", answer.body);
    assert!(!answer.body.contains("<Say>"), "{}", answer.body);
}

#[actix_web::test]
async fn the_signed_recording_callback_stores_the_url_and_duration_and_a_forged_one_is_refused() {
    let twilio = fake_twilio();
    let app = app(&twilio, &[("CALLBRIDGE_RECORDING_INBOUND", "on")]).await;
    let webhook = app.webhook();
    webhook.post_incoming().await.expect("answered");
    let id = stored_id(&app, &webhook.call_sid).await;
    let callback = format!("{PUBLIC_URL}/recording-status/{id}");

    let forged = twilio
        .post_recording_completed(
            &app.address,
            &callback,
            "not-the-auth-token",
            &webhook.account_sid,
            &webhook.call_sid,
            RECORDING_SID,
            42,
        )
        .await;
    let after_forged = app.calls.get(&id).expect("stored");
    let signed = twilio
        .post_recording_completed(
            &app.address,
            &callback,
            AUTH_TOKEN,
            &webhook.account_sid,
            &webhook.call_sid,
            RECORDING_SID,
            42,
        )
        .await;
    let other_call = twilio
        .post_recording_completed(
            &app.address,
            &callback,
            AUTH_TOKEN,
            &webhook.account_sid,
            "CA00000000000000000000000000000000",
            RECORDING_SID,
            42,
        )
        .await;
    let call = app.calls.get(&id).expect("stored");

    assert_eq!(forged.0, 403, "{}", forged.1);
    assert!(after_forged.recordings.is_empty());
    assert_eq!(signed.0, 204, "{}", signed.1);
    assert_eq!(other_call.0, 404, "{}", other_call.1);
    assert!(call.record);
    assert_eq!(call.recordings.len(), 1, "{:?}", call.recordings);
    let recording = &call.recordings[0];
    assert_eq!(recording.sid, RECORDING_SID);
    assert_eq!(recording.status, "completed");
    assert_eq!(
        recording.url.as_deref(),
        Some(
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{RECORDING_SID}",
                webhook.account_sid
            )
            .as_str()
        )
    );
    assert_eq!(recording.duration_s, Some(42));
    assert_eq!(recording.channels, Some(2));
    assert_eq!(recording.delete_due_at, None, "no retention is set");
    let json = serde_json::to_value(&call).expect("serializes");
    assert_eq!(json["recordings"][0]["duration_s"], 42);
}

#[actix_web::test]
async fn the_retention_job_deletes_the_recording_at_twilio_once_its_retention_ran_out() {
    let twilio = fake_twilio();
    let app = app(
        &twilio,
        &[
            ("CALLBRIDGE_RECORDING_INBOUND", "on"),
            ("CALLBRIDGE_RECORDING_RETENTION_S", "1"),
        ],
    )
    .await;
    let webhook = app.webhook();
    webhook.post_incoming().await.expect("answered");
    let id = stored_id(&app, &webhook.call_sid).await;

    let (status, body) = twilio
        .post_recording_completed(
            &app.address,
            &format!("{PUBLIC_URL}/recording-status/{id}"),
            AUTH_TOKEN,
            &webhook.account_sid,
            &webhook.call_sid,
            RECORDING_SID,
            7,
        )
        .await;
    let stored = app.calls.get(&id).expect("stored");
    let deleted = twilio
        .wait_for_recording_deletion(RECORDING_SID, Duration::from_secs(15))
        .await;
    let call = wait_for(&app, &id, Duration::from_secs(5), |c| {
        c.recordings.first().is_some_and(|r| r.deleted_at.is_some())
    })
    .await;

    assert_eq!(status, 204, "{body}");
    let due = stored.recordings[0].delete_due_at.expect("a due time");
    assert!(due > stored.recordings[0].reported_at, "{due}");
    assert!(deleted, "no DELETE at Twilio: {:?}", twilio.requests());
    let request = twilio
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("the DELETE");
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}.json")
    );
    assert!(
        request
            .authorization
            .is_some_and(|a| a.starts_with("Basic "))
    );
    assert_eq!(call.recordings[0].status, "deleted");
    assert!(call.recordings[0].deleted_at.is_some_and(|at| at >= due));
}

async fn api(address: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::default();
    let request = match method {
        "POST" => client.post(format!("{address}{path}")),
        _ => client.get(format!("{address}{path}")),
    }
    .bearer_auth(API_KEY);
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .expect("the API answers");
    let bytes = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn a_recording_whose_retention_runs_out_while_the_server_is_down_is_deleted_after_a_restart()
{
    let fake = FakeRealtime::start(Script::default()).await;
    let twilio = fake_twilio();
    let data_dir = crate::helpers::temp_data_dir().display().to_string();
    let env = [
        ("CALLBRIDGE_DATA_DIR", data_dir.as_str()),
        ("CALLBRIDGE_API_KEY", API_KEY),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_PHONE_NUMBER", OUR_NUMBER),
        ("TWILIO_API_BASE_URL", twilio.url.as_str()),
        ("CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES", "+1"),
        ("CALLBRIDGE_DRAIN_TIMEOUT_S", "0"),
        ("CALLBRIDGE_RECORDING_RETENTION_S", "3"),
    ];

    // First run: a recorded call placed through the REST API, its recording reported, then the server stops
    // before the retention runs out.
    let mut first = spawn_binary(&fake.url(), &env).await;
    let (status, call) = api(
        &first.address,
        "POST",
        "/api/calls",
        Some(serde_json::json!({"to": SHOP, "instructions": "Ask for the opening hours.", "record": true})),
    )
    .await;
    assert_eq!(status, 201, "{call}");
    assert_eq!(call["record"], true, "{call}");
    let id = call["id"].as_str().expect("an id").to_owned();
    let callback = twilio.form_values(0, "RecordingStatusCallback");
    assert_eq!(callback, [format!("{PUBLIC_URL}/recording-status/{id}")]);
    let (status, body) = twilio
        .post_recording_completed(
            &first.address,
            &callback[0],
            AUTH_TOKEN,
            ACCOUNT_SID,
            CALL_SID,
            RECORDING_SID,
            12,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (exited, logs) = first.stop().await;
    assert!(exited.success(), "{logs}");
    assert!(
        twilio.deleted_recordings().is_empty(),
        "the first run deleted the recording before it stopped; the retention is too short for this machine"
    );

    // Second run on the same data directory: the job is picked up and the recording deleted.
    let second = spawn_binary(&fake.url(), &env).await;
    let deleted = twilio
        .wait_for_recording_deletion(RECORDING_SID, Duration::from_secs(20))
        .await;
    let mut shown = Value::Null;
    for _ in 0..100 {
        let (_, call) = api(&second.address, "GET", &format!("/api/calls/{id}"), None).await;
        shown = call;
        if shown["recordings"][0]["deleted_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(
        deleted,
        "no DELETE after the restart: {:?}",
        twilio.requests()
    );
    assert_eq!(shown["recordings"][0]["sid"], RECORDING_SID, "{shown}");
    assert_eq!(shown["recordings"][0]["status"], "deleted", "{shown}");
    assert!(shown["recordings"][0]["deleted_at"].is_string(), "{shown}");
    assert_eq!(shown["recordings"][0]["duration_s"], 12, "{shown}");
}
