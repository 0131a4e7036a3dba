//! The REST API under `/api` (bearer key, JSON errors), its client ([`ApiClient`]) and `callbridge call`, against the
//! app on port 0 with a fake Twilio behind it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use callbridge::calls::model::CallStatus;
use callbridge::calls::service::PlaceCall;
use callbridge::cli::api_client::ApiClient;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::fake_realtime::Script;
use crate::fake_twilio::{FakeTwilio, Route};
use crate::helpers::{AUTH_TOKEN, TestApp, post_signed, spawn_app_with};

const API_KEY: &str = "test-api-key";
const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const OUR_NUMBER: &str = "+15550100000";
const CALLEE: &str = "+14155552671";
const BAD_NUMBER: &str = "+1415";
const INSTRUCTIONS: &str = "Book a table for 4 tonight at 7:30 under the name Rivera.";

/// A fake Twilio that creates every call with [`CALL_SID`].
fn twilio_accepting() -> FakeTwilio {
    FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        201,
        &format!(r#"{{"sid":"{CALL_SID}","status":"queued"}}"#),
    )])
}

/// A fake Twilio that refuses every call as Twilio refuses an invalid `To`.
fn twilio_refusing() -> FakeTwilio {
    FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        400,
        r#"{"code":21211,"message":"Invalid 'To' Phone Number","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
    )])
}

/// The app with the API key and outbound calls configured against `twilio`.
async fn app(twilio: &FakeTwilio) -> TestApp {
    spawn_app_with(
        Script::default(),
        &[
            ("CALLBRIDGE_API_KEY", API_KEY),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_PHONE_NUMBER", OUR_NUMBER),
            ("TWILIO_API_BASE_URL", &twilio.url),
            ("CALLBRIDGE_RING_TIMEOUT_S", "25"),
            ("CALLBRIDGE_MAX_CALL_DURATION_S", "600"),
        ],
    )
    .await
}

/// An answer from the API: status, `WWW-Authenticate`, JSON body (`Null` when empty or not JSON).
struct ApiAnswer {
    status: u16,
    www_authenticate: Option<String>,
    json: Value,
}

/// Sends `method path` to the app with `Authorization: Bearer {key}` (none when `key` is `None`) and `body` as raw
/// JSON text (none when `None`).
async fn request(
    app: &TestApp,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> ApiAnswer {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let url = format!("{}{path}", app.address);
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        other => panic!("no {other} in this API"),
    };
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let sent = match body {
        Some(body) => {
            request
                .insert_header(("Content-Type", "application/json"))
                .send_body(body.to_owned())
                .await
        }
        None => request.send().await,
    };
    let mut response = sent.expect("the API answers");
    let bytes = response.body().await.expect("a body");
    ApiAnswer {
        status: response.status().as_u16(),
        www_authenticate: response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// `POST /api/calls` with the right key.
async fn place(app: &TestApp, body: &Value) -> ApiAnswer {
    request(
        app,
        "POST",
        "/api/calls",
        Some(API_KEY),
        Some(&body.to_string()),
    )
    .await
}

fn booking(to: &str) -> Value {
    json!({"to": to, "instructions": INSTRUCTIONS, "max_duration_s": 120})
}

fn assert_unauthorized(answer: &ApiAnswer) {
    assert_eq!(answer.status, 401, "{}", answer.json);
    assert_eq!(answer.www_authenticate.as_deref(), Some("Bearer"));
    assert_eq!(
        answer.json["error"]["code"], "unauthorized",
        "{}",
        answer.json
    );
}

#[actix_web::test]
async fn a_request_without_a_key_is_refused_with_401() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let listed = request(&app, "GET", "/api/calls", None, None).await;
    let placed = request(
        &app,
        "POST",
        "/api/calls",
        None,
        Some(&booking(CALLEE).to_string()),
    )
    .await;

    assert_unauthorized(&listed);
    assert_unauthorized(&placed);
    assert!(
        twilio.requests().is_empty(),
        "an unauthorized request dialed"
    );
}

#[actix_web::test]
async fn a_wrong_key_of_the_same_length_is_refused_with_401() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let answer = request(&app, "GET", "/api/calls", Some("test-api-kez"), None).await;

    assert_unauthorized(&answer);
}

#[actix_web::test]
async fn a_key_of_another_length_is_refused_with_401() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let shorter = request(&app, "GET", "/api/calls", Some("test-api-ke"), None).await;
    let longer = request(
        &app,
        "GET",
        "/api/calls",
        Some("test-api-key-and-more"),
        None,
    )
    .await;

    assert_unauthorized(&shorter);
    assert_unauthorized(&longer);
}

#[actix_web::test]
async fn a_server_without_an_api_key_refuses_every_request_and_says_why() {
    let twilio = twilio_accepting();
    let app = spawn_app_with(Script::default(), &[("TWILIO_API_BASE_URL", &twilio.url)]).await;

    let answer = request(&app, "GET", "/api/calls", Some(""), None).await;
    let with_a_key = request(&app, "GET", "/api/calls", Some(API_KEY), None).await;

    assert_unauthorized(&answer);
    assert_unauthorized(&with_a_key);
    let message = with_a_key.json["error"]["message"]
        .as_str()
        .expect("a message");
    assert!(
        message.contains("CALLBRIDGE_API_KEY is not set on the server"),
        "{message}"
    );
}

#[actix_web::test]
async fn placing_a_call_to_a_bad_number_is_a_400_invalid_number_and_never_reaches_twilio() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let answer = place(&app, &booking(BAD_NUMBER)).await;

    assert_eq!(answer.status, 400, "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "invalid_number");
    let message = answer.json["error"]["message"].as_str().expect("a message");
    assert!(message.contains("E.164"), "{message}");
    assert!(
        twilio.requests().is_empty(),
        "Twilio was asked: {:?}",
        twilio.requests()
    );
}

#[actix_web::test]
async fn placing_a_call_stores_it_queued_and_asks_twilio_with_the_exact_form() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let answer = place(&app, &booking(CALLEE)).await;

    assert_eq!(answer.status, 201, "{}", answer.json);
    let id = answer.json["id"].as_str().expect("an id").to_owned();
    assert_eq!(answer.json["status"], "queued");
    assert_eq!(answer.json["call_sid"], CALL_SID);
    assert_eq!(answer.json["instructions"], INSTRUCTIONS);
    let stored = app.calls.get(&id).expect("the call is stored");
    assert_eq!(stored.status, CallStatus::Queued);
    assert_eq!(stored.call_sid.as_deref(), Some(CALL_SID));

    let requests = twilio.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let create = &requests[0];
    assert_eq!(create.method, "POST");
    assert_eq!(
        create.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json")
    );
    let form = |name: &str| -> Vec<&str> {
        create
            .form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(form("To"), [CALLEE]);
    assert_eq!(form("From"), [OUR_NUMBER]);
    let outbound_url = format!("https://callbridge.test/outbound-call/{id}");
    assert_eq!(form("Url"), [outbound_url.as_str()]);
    assert_eq!(form("Method"), ["POST"]);
    assert_eq!(
        form("StatusCallback"),
        ["https://callbridge.test/call-status"]
    );
    assert_eq!(form("StatusCallbackMethod"), ["POST"]);
    assert_eq!(
        form("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(form("Timeout"), ["25"]);
    assert_eq!(form("TimeLimit"), ["120"]);
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{ACCOUNT_SID}:{AUTH_TOKEN}"),
    );
    assert_eq!(
        create.authorization.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
}

#[actix_web::test]
async fn a_twilio_refusal_is_a_502_keeping_twilios_code_and_message_and_the_call_is_stored_failed()
{
    let twilio = twilio_refusing();
    let app = app(&twilio).await;

    let answer = place(&app, &booking(CALLEE)).await;

    assert_eq!(answer.status, 502, "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "twilio_error");
    let message = answer.json["error"]["message"].as_str().expect("a message");
    assert!(message.contains("Invalid 'To' Phone Number"), "{message}");
    assert!(message.contains("21211"), "{message}");
    let stored = app.calls.list_calls(10).expect("the store reads");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let call = app.calls.get(&stored[0].id).expect("the call is stored");
    assert_eq!(call.status, CallStatus::Failed);
    let error = call.error.expect("Twilio's error is stored");
    assert_eq!(error.code, Some(21211));
    assert_eq!(error.message, "Invalid 'To' Phone Number");
}

#[actix_web::test]
async fn listing_calls_shows_the_placed_call() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let placed = place(&app, &booking(CALLEE)).await;
    assert_eq!(placed.status, 201, "{}", placed.json);

    let answer = request(&app, "GET", "/api/calls?limit=5", Some(API_KEY), None).await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    let calls = answer.json["calls"].as_array().expect("a list of calls");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["id"], placed.json["id"]);
    assert_eq!(calls[0]["to"], CALLEE);
    assert_eq!(calls[0]["status"], "queued");
}

#[actix_web::test]
async fn getting_an_unknown_call_is_a_404() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let answer = request(
        &app,
        "GET",
        "/api/calls/call_nosuchcall",
        Some(API_KEY),
        None,
    )
    .await;

    assert_eq!(answer.status, 404, "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "not_found");
}

#[actix_web::test]
async fn waiting_longer_than_120_seconds_is_a_400() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let placed = place(&app, &booking(CALLEE)).await;
    let id = placed.json["id"].as_str().expect("an id");

    let answer = request(
        &app,
        "GET",
        &format!("/api/calls/{id}?wait_s=200"),
        Some(API_KEY),
        None,
    )
    .await;

    assert_eq!(answer.status, 400, "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "invalid_request");
    let message = answer.json["error"]["message"].as_str().expect("a message");
    assert!(message.contains("120"), "{message}");
}

#[actix_web::test]
async fn waiting_on_a_call_nobody_updates_returns_it_unchanged_after_the_wait() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let placed = place(&app, &booking(CALLEE)).await;
    let id = placed.json["id"].as_str().expect("an id");
    let started = Instant::now();

    let answer = request(
        &app,
        "GET",
        &format!("/api/calls/{id}?wait_s=2"),
        Some(API_KEY),
        None,
    )
    .await;

    let waited = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["status"], "queued");
    assert_eq!(
        answer.json["status_timeline"],
        placed.json["status_timeline"]
    );
    assert!(
        waited >= Duration::from_millis(1500),
        "answered after {waited:?}, before the wait"
    );
}

#[actix_web::test]
async fn a_wait_returns_early_when_the_status_changes() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let placed = place(&app, &booking(CALLEE)).await;
    let id = placed.json["id"].as_str().expect("an id").to_owned();
    let path = format!("/api/calls/{id}?wait_s=60");
    let waiting = request(&app, "GET", &path, Some(API_KEY), None);
    let ring = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = call_status(&app, "ringing", "idem-ringing-1").await;
        assert!(
            (200..300).contains(&status),
            "status callback refused: {status}"
        );
    };
    let started = Instant::now();

    let (answer, ()) = tokio::join!(waiting, ring);

    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["status"], "ringing");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the wait ran to its end"
    );
}

#[actix_web::test]
async fn instructing_a_call_that_is_not_live_is_a_409() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let placed = place(&app, &booking(CALLEE)).await;
    let id = placed.json["id"].as_str().expect("an id");

    let answer = request(
        &app,
        "POST",
        &format!("/api/calls/{id}/instruct"),
        Some(API_KEY),
        Some(r#"{"text":"Ask for a window seat."}"#),
    )
    .await;

    assert_eq!(answer.status, 409, "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "not_live");
}

#[actix_web::test]
async fn hanging_up_an_unknown_call_is_a_404() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let answer = request(
        &app,
        "POST",
        "/api/calls/call_nosuchcall/hangup",
        Some(API_KEY),
        None,
    )
    .await;

    assert_eq!(answer.status, 404, "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "not_found");
}

#[actix_web::test]
async fn a_malformed_json_body_is_a_400_invalid_request() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let truncated = request(
        &app,
        "POST",
        "/api/calls",
        Some(API_KEY),
        Some(r#"{"to": "+14155552671""#),
    )
    .await;
    let missing_field = request(
        &app,
        "POST",
        "/api/calls",
        Some(API_KEY),
        Some(r#"{"to": "+14155552671"}"#),
    )
    .await;

    assert_eq!(truncated.status, 400, "{}", truncated.json);
    assert_eq!(truncated.json["error"]["code"], "invalid_request");
    assert_eq!(missing_field.status, 400, "{}", missing_field.json);
    assert_eq!(missing_field.json["error"]["code"], "invalid_request");
    let message = missing_field.json["error"]["message"]
        .as_str()
        .expect("a message");
    assert!(
        message.contains("instructions"),
        "serde names the missing field: {message}"
    );
    assert!(twilio.requests().is_empty(), "a malformed request dialed");
}

#[actix_web::test]
async fn an_unknown_api_route_is_a_json_404() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let answer = request(&app, "GET", "/api/nothing-here", Some(API_KEY), None).await;

    assert_eq!(answer.status, 404);
    assert_eq!(answer.json["error"]["code"], "not_found");
}

#[actix_web::test]
async fn the_api_client_places_reads_and_lists_calls_over_http() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let client = ApiClient::new(
        app.address.parse().expect("a URL"),
        SecretString::from(API_KEY.to_owned()),
    );

    let placed = client
        .place_call(PlaceCall {
            to: CALLEE.into(),
            instructions: INSTRUCTIONS.into(),
            ..PlaceCall::default()
        })
        .await
        .expect("placed");
    let read = client.get_call(&placed.id, None).await.expect("read back");
    let listed = client.list_calls(10).await.expect("listed");
    let not_live = client
        .instruct_call(&placed.id, "Ask for a window seat.")
        .await
        .expect_err("the call is not live");
    let bad_number = client
        .place_call(PlaceCall {
            to: BAD_NUMBER.into(),
            instructions: INSTRUCTIONS.into(),
            ..PlaceCall::default()
        })
        .await
        .expect_err("not E.164");

    assert_eq!(placed.call_sid.as_deref(), Some(CALL_SID));
    assert_eq!(read, placed);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, placed.id);
    assert_eq!(not_live.code, "not_live");
    assert_eq!(bad_number.code, "invalid_number");
}

#[actix_web::test]
async fn the_api_client_with_a_wrong_key_is_unauthorized_naming_callbridge_api_key() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let client = ApiClient::new(
        app.address.parse().expect("a URL"),
        SecretString::from("not-the-key".to_owned()),
    );

    let error = client.list_calls(10).await.expect_err("a wrong key");

    assert_eq!(error.code, "unauthorized");
    assert!(
        error.message.contains("CALLBRIDGE_API_KEY"),
        "{}",
        error.message
    );
}

/// Posts a signed status callback for [`CALL_SID`]; returns the HTTP status.
async fn call_status(app: &TestApp, status: &str, idempotency_token: &str) -> u16 {
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

/// `callbridge call ARGS` (the real binary) against `app` with `key`, in a clean environment.
fn call_command(app: &TestApp, key: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"));
    command
        .arg("call")
        .args(args)
        .env_clear()
        .env("CALLBRIDGE_URL", &app.address)
        .env("CALLBRIDGE_API_KEY", key)
        .env("CALLBRIDGE_CONFIG", "/nonexistent/callbridge.toml")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end (at most 60 s): exit code, stdout, stderr.
async fn finish(mut command: tokio::process::Command) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("callbridge call finishes")
        .expect("callbridge call runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn the_call_command_with_a_bad_number_exits_2_with_the_servers_message() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let (code, stdout, stderr) = finish(call_command(
        &app,
        API_KEY,
        &[BAD_NUMBER, "--instructions", INSTRUCTIONS],
    ))
    .await;

    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("E.164"), "{stderr}");
    assert!(twilio.requests().is_empty(), "Twilio was asked");
}

#[actix_web::test]
async fn the_call_command_with_a_wrong_key_exits_2_naming_callbridge_api_key() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;

    let (code, stdout, stderr) = finish(call_command(
        &app,
        "not-the-key",
        &[CALLEE, "--instructions", INSTRUCTIONS],
    ))
    .await;

    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("CALLBRIDGE_API_KEY"), "{stderr}");
    assert!(twilio.requests().is_empty(), "Twilio was asked");
}

#[actix_web::test]
async fn the_call_command_follows_a_busy_call_to_its_end_and_exits_1() {
    let twilio = twilio_accepting();
    let app = app(&twilio).await;
    let running = call_command(&app, API_KEY, &[CALLEE, "--instructions", INSTRUCTIONS])
        .spawn()
        .expect("callbridge call starts");
    twilio
        .wait_for_request(Duration::from_secs(20))
        .await
        .expect("the CLI placed the call");
    // Let the CLI print `queued` and start waiting before the call moves on.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (status, token) in [
        ("initiated", "idem-1"),
        ("ringing", "idem-2"),
        ("busy", "idem-3"),
    ] {
        let answered = call_status(&app, status, token).await;
        assert!(
            (200..300).contains(&answered),
            "{status} callback refused: {answered}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = tokio::time::timeout(Duration::from_secs(60), running.wait_with_output())
        .await
        .expect("callbridge call ends with the call")
        .expect("callbridge call runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let statuses: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            line.len() > 10 && line.as_bytes()[2] == b':' && line.get(8..10) == Some("  ")
        })
        .map(|line| &line[10..])
        .collect();
    assert_eq!(
        statuses,
        ["queued", "initiated", "ringing", "busy"],
        "{stdout}"
    );
    assert!(stdout.contains("Status:     busy"), "{stdout}");
    assert!(stdout.contains("Duration:   not answered"), "{stdout}");
}
