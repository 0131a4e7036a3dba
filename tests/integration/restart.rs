//! Call records survive a restart of the server.

use serde_json::Value;

use crate::fake_realtime::{FakeRealtime, Script};
use crate::fake_twilio::{FakeTwilio, Route};
use crate::helpers::{spawn_binary, temp_data_dir};

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
