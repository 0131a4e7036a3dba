//! Call records survive a restart of the server.

use serde_json::Value;

use std::time::Duration;

use callbridge::simulate::Observation;

use crate::fake_realtime::{FakeRealtime, Script, ScriptedResponse};
use crate::fake_twilio::{FakeTwilio, Route};
use crate::helpers::{CALLER_HELLO, TestApp, TestCall, spawn_binary, temp_data_dir};

const API_KEY: &str = "restart-test-api-key";

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
async fn call_records_survive_a_server_restart() {
    let fake = FakeRealtime::start(Script::default()).await;
    let twilio = FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        201,
        r#"{"sid":"CA99998888777766665555444433332222","status":"queued"}"#,
    )]);
    let data_dir = temp_data_dir();
    let data_dir = data_dir.display().to_string();
    let env = [
        ("CALLBRIDGE_DATA_DIR", data_dir.as_str()),
        ("CALLBRIDGE_API_KEY", API_KEY),
        ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
        ("TWILIO_PHONE_NUMBER", "+14155550100"),
        ("TWILIO_API_BASE_URL", twilio.url.as_str()),
        ("CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES", "+1"),
        ("CALLBRIDGE_DRAIN_TIMEOUT_S", "0"),
    ];

    // First run: place a call.
    let mut first = spawn_binary(&fake.url(), &env).await;
    let (status, call) = api(
        &first.address,
        "POST",
        "/api/calls",
        Some(
            serde_json::json!({"to": "+14155552671", "instructions": "Ask for the opening hours."}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{call}");
    let id = call["id"].as_str().expect("an id").to_owned();
    let (exited, logs) = first.stop().await;
    assert!(exited.success(), "{logs}");

    // Second run on the same data directory: the call is still there, instructions and all.
    let second = spawn_binary(&fake.url(), &env).await;
    let (status, again) = api(&second.address, "GET", &format!("/api/calls/{id}"), None).await;

    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["call_sid"], "CA99998888777766665555444433332222");
    assert_eq!(again["instructions"], "Ask for the opening hours.");
    assert_eq!(again["status_timeline"][0]["status"], "queued");
}

#[actix_web::test]
async fn a_call_in_progress_when_the_server_is_killed_is_closed_with_its_turns_at_the_next_start() {
    // Arrange: the real binary, a call whose caller turn is stored, the assistant still speaking.
    let fake = FakeRealtime::start(Script {
        responses: vec![ScriptedResponse::speak(30_000, "A long answer.")],
        caller_transcripts: vec!["Hi, I'd like to book a table.".into()],
        speed_up: 1.0,
        ..Script::default()
    })
    .await;
    let data_dir = temp_data_dir().display().to_string();
    let env = [
        ("CALLBRIDGE_DATA_DIR", data_dir.as_str()),
        ("CALLBRIDGE_API_KEY", API_KEY),
    ];
    let mut first = spawn_binary(&fake.url(), &env).await;
    let app = TestApp::for_address(&first.address, first.port);
    let TestCall { stream, .. } = app.call().await;
    stream.send_audio(&CALLER_HELLO);
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            Duration::from_secs(15),
        )
        .await
        .expect("the answer is playing");
    let mut stored = Value::Null;
    for _ in 0..100 {
        let (_, calls) = api(&first.address, "GET", "/api/calls", None).await;
        if let Some(id) = calls["calls"][0]["id"].as_str() {
            let (_, call) = api(&first.address, "GET", &format!("/api/calls/{id}"), None).await;
            if call["transcript"].as_array().is_some_and(|t| !t.is_empty()) {
                stored = call;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stored["status"], "in-progress",
        "the caller's turn is stored mid-call: {stored}"
    );
    let id = stored["id"].as_str().expect("an id").to_owned();

    // Act: SIGKILL (no drain, no final write), then start again on the same data directory.
    first.child.start_kill().expect("SIGKILL is sent");
    let _ = first.child.wait().await;
    let second = spawn_binary(&fake.url(), &env).await;
    let (status, after) = api(&second.address, "GET", &format!("/api/calls/{id}"), None).await;

    // Assert: the record is final, says why, and keeps the turn stored before the kill.
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["status"], "completed", "{after}");
    assert_eq!(after["end_reason"], "error:server_stopped", "{after}");
    assert_eq!(after["transcript"], stored["transcript"], "{after}");
    assert!(after["ended_at"].is_string(), "{after}");
}
