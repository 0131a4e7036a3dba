//! Hostile input and complete signature checks: an idle media stream is closed, an oversized
//! frame is refused without ending other calls, the media-stream upgrade's own `X-Twilio-Signature` is checked when
//! present, JSON-body webhooks are checked through `bodySHA256`, and no secret reaches the logs of a full call.

use std::time::Duration;

use base64::Engine as _;
use callbridge::calls::{CallFailure, EndReason};
use callbridge::simulate::{
    MediaClientConfig, MediaStreamClient, Observation, SimulateError, local_stream_url,
};
use callbridge::twilio::signature::RequestValidator;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::fake_realtime::{FakeRealtime, Script, ScriptedResponse};
use crate::fake_twilio::FakeTwilio;
use crate::helpers::{
    AUTH_TOKEN, CALLER_HELLO, PUBLIC_URL, TestApp, server_closed, spawn_app, spawn_binary,
};
use crate::helpers::{TestCall, spawn_app_with};

// ---- The idle stream ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_sends_nothing_after_start_is_hung_up_after_the_idle_timeout_as_stream_idle()
{
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_STREAM_IDLE_TIMEOUT_S", "1")],
    )
    .await;

    let call = app
        .call_with(MediaClientConfig {
            fill_silence: false,
            ..MediaClientConfig::default()
        })
        .await;
    let started = call
        .expect("the start", Duration::from_secs(2), |o| {
            matches!(o, Observation::Started { .. })
        })
        .await;
    let hung_up = call.expect_hang_up(Duration::from_secs(5)).await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;

    assert!(
        hung_up.at.duration_since(started.at) >= Duration::from_millis(900),
        "hung up {:?} after the start, before the idle timeout",
        hung_up.at.duration_since(started.at)
    );
    assert_eq!(
        record.end_reason,
        Some(EndReason::Error(CallFailure::StreamIdle).to_string())
    );
    assert_eq!(record.end_reason.as_deref(), Some("error:stream_idle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sending_its_20_ms_frames_outlives_the_idle_timeout() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_STREAM_IDLE_TIMEOUT_S", "1")],
    )
    .await;
    // The default client sends a silence frame every 20 ms, as Twilio does during a call.
    let call = app.call().await;

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let closed_early = call.stream.closed(Duration::ZERO).await;
    call.stream.stop().await;
    let record = app
        .record(&call.webhook.call_sid, Duration::from_secs(5))
        .await;

    assert!(!closed_early, "{:#?}", call.stream.events());
    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
}

// ---- Oversized frames ----

/// `{"event":"media","padding":"AAAA..."}` of about 100 KB: above the default maximum frame size (64 KiB).
fn oversized_frame() -> String {
    format!(
        r#"{{"event":"media","padding":"{}"}}"#,
        "A".repeat(100 * 1024)
    )
}

/// Waits until `call` has played at least `ms` of assistant audio.
async fn expect_reply(call: &TestCall, ms: u64) {
    call.expect(
        "the assistant's reply",
        Duration::from_secs(20),
        |o| matches!(o, Observation::PlaybackIdle { played_ms } if *played_ms >= ms),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_on_one_call_is_skipped_and_counted_while_both_calls_go_on() {
    let app = spawn_app(Script {
        responses: vec![ScriptedResponse::speak(500, "Still here.")],
        ..Script::default()
    })
    .await;
    let hostile = app.call().await;
    let other = app.call().await;

    hostile.stream.send_raw_text(&oversized_frame()).await;
    hostile.stream.send_audio(&CALLER_HELLO);
    other.stream.send_audio(&CALLER_HELLO);
    expect_reply(&other, 500).await;
    expect_reply(&hostile, 500).await;
    hostile.stream.stop().await;
    other.stream.stop().await;
    let hostile_record = app
        .record(&hostile.webhook.call_sid, Duration::from_secs(5))
        .await;
    let other_record = app
        .record(&other.webhook.call_sid, Duration::from_secs(5))
        .await;

    assert_eq!(hostile_record.skipped_frames, 1);
    assert_eq!(other_record.skipped_frames, 0);
    assert_eq!(
        hostile_record.end_reason,
        Some(EndReason::CallerHungUp.to_string())
    );
    assert_eq!(
        other_record.end_reason,
        Some(EndReason::CallerHungUp.to_string())
    );
    assert_eq!(other.assistant_ms_received(), 500);
    assert_eq!(hostile.assistant_ms_received(), 500);
}

// ---- The media-stream upgrade's own signature ----

/// Answers a fresh inbound call; returns the stream URL as Twilio was told it (`wss://PUBLIC/...`), the local `ws://`
/// URL to connect to, and the CallSid.
async fn answered_stream(app: &TestApp) -> (String, String, String) {
    let webhook = app.webhook();
    let answer = webhook.post_incoming().await.expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let public = answer.stream.expect("<Connect><Stream>").url;
    let local = local_stream_url(&public, &app.address).expect("a stream URL");
    (public, local, webhook.call_sid)
}

fn signed_upgrade(signature: String) -> MediaClientConfig {
    MediaClientConfig {
        upgrade_signature: Some(signature),
        ..MediaClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_signed_by_twilio_for_the_stream_url_is_accepted() {
    let app = spawn_app(Script::default()).await;
    let (public, local, call_sid) = answered_stream(&app).await;
    assert!(
        public.starts_with("wss://callbridge.test/media-stream/"),
        "{public}"
    );
    let signature = RequestValidator::new(AUTH_TOKEN).sign(&public, &[]);

    let stream = MediaStreamClient::connect_with(&local, signed_upgrade(signature))
        .await
        .expect("a correctly signed upgrade is accepted");
    stream.start(&call_sid, &[]).await.expect("start is sent");
    stream.stop().await;
    let record = app.record(&call_sid, Duration::from_secs(5)).await;

    assert_eq!(record.end_reason, Some(EndReason::CallerHungUp.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_signed_with_the_default_port_is_accepted() {
    let app = spawn_app(Script::default()).await;
    let (public, local, _call_sid) = answered_stream(&app).await;
    let with_port = public.replacen("callbridge.test", "callbridge.test:443", 1);
    let signature = RequestValidator::new(AUTH_TOKEN).sign(&with_port, &[]);

    let result = MediaStreamClient::connect_with(&local, signed_upgrade(signature)).await;

    assert!(result.is_ok(), "{:?}", result.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_with_a_forged_signature_is_refused_with_403_and_leaves_the_token_usable() {
    let app = spawn_app(Script::default()).await;
    let (public, local, _call_sid) = answered_stream(&app).await;
    let forged = RequestValidator::new("not-the-real-token").sign(&public, &[]);

    let refused = MediaStreamClient::connect_with(&local, signed_upgrade(forged)).await;
    // No signature header: the token alone decides, and it was not consumed by the refused attempt.
    let unsigned = MediaStreamClient::connect(&local).await;

    assert!(
        matches!(refused, Err(SimulateError::Rejected(403))),
        "{:?}",
        refused.err()
    );
    assert!(unsigned.is_ok(), "{:?}", unsigned.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_signed_for_another_stream_url_is_refused_with_403() {
    let app = spawn_app(Script::default()).await;
    let (_public, local, _call_sid) = answered_stream(&app).await;
    let (other_public, _other_local, _) = answered_stream(&app).await;
    let signed_for_the_other = RequestValidator::new(AUTH_TOKEN).sign(&other_public, &[]);

    let result =
        MediaStreamClient::connect_with(&local, signed_upgrade(signed_for_the_other)).await;

    assert!(
        matches!(result, Err(SimulateError::Rejected(403))),
        "{:?}",
        result.err()
    );
}

// ---- JSON-body webhooks (bodySHA256) ----

/// POSTs `body` as `application/json` to `/call-status?bodySHA256=<hex sha256(signed_body)>`, signed as Twilio signs a
/// JSON webhook (the public URL with its query, no parameters) with `token`. Returns the HTTP status.
async fn post_json_status(app: &TestApp, signed_body: &str, body: &str, token: &str) -> u16 {
    let hash = hex::encode(Sha256::digest(signed_body.as_bytes()));
    let path = format!("/call-status?bodySHA256={hash}");
    let signature = RequestValidator::new(token).sign(&format!("{PUBLIC_URL}{path}"), &[]);
    let response = awc::Client::default()
        .post(format!("{}{path}", app.address))
        .insert_header(("X-Twilio-Signature", signature))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.to_owned())
        .await
        .expect("the webhook is answered");
    response.status().as_u16()
}

const JSON_STATUS: &str =
    r#"{"CallSid":"CA0123456789abcdef0123456789abcdef","CallStatus":"completed"}"#;

#[actix_web::test]
async fn a_correctly_signed_json_webhook_passes_the_signature_check() {
    let app = spawn_app(Script::default()).await;

    let status = post_json_status(&app, JSON_STATUS, JSON_STATUS, AUTH_TOKEN).await;

    // Past the signature check; our webhooks read form fields, so the JSON one then lacks its CallSid.
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn a_json_webhook_whose_body_was_tampered_with_is_refused_with_403() {
    let app = spawn_app(Script::default()).await;
    let tampered = JSON_STATUS.replace("completed", "canceled");

    let status = post_json_status(&app, JSON_STATUS, &tampered, AUTH_TOKEN).await;

    assert_eq!(status, 403);
}

#[actix_web::test]
async fn a_json_webhook_signed_with_another_token_is_refused_with_403() {
    let app = spawn_app(Script::default()).await;

    let status = post_json_status(&app, JSON_STATUS, JSON_STATUS, "not-the-real-token").await;

    assert_eq!(status, 403);
}

// ---- Secrets never logged ----

/// Distinctive secret values: any of them in the logs is a leak.
const SECRET_AUTH_TOKEN: &str = "h20authtokenQx7Zk3Vw9Jp2Lm5Rt8";
const SECRET_OPENAI_KEY: &str = "sk-h20openaikeyBn4Fy6Hc1Ds0Gu7";
const SECRET_API_KEY: &str = "h20apikeyWe3Ta8Yi5Ko2Pz9Xc4";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// Sends `method {address}{path}` with the bearer key; returns the status and JSON body.
async fn api(address: &str, method: &str, path: &str) -> (u16, Value) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!("{address}{path}");
    let request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        other => panic!("no {other} here"),
    };
    let mut response = request
        .bearer_auth(SECRET_API_KEY)
        .send()
        .await
        .expect("the API answers");
    let body = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn a_full_call_logged_at_debug_level_shows_neither_the_auth_token_the_openai_key_nor_the_api_key()
 {
    full_call_logs_show_no_secret("debug", "DEBUG").await;
}

#[actix_web::test]
async fn a_full_call_logged_at_trace_level_shows_neither_the_auth_token_the_openai_key_nor_the_api_key()
 {
    full_call_logs_show_no_secret("trace", "TRACE").await;
}

/// Runs a whole call through the real binary with `RUST_LOG=rust_log` (signed webhook, stream, reply, `/api` list
/// and hang-up, REST hang-up with Basic auth) and asserts that lines of `level` were logged and that no line holds
/// the auth token, the OpenAI key, the API key or the Basic credential.
async fn full_call_logs_show_no_secret(rust_log: &str, level: &str) {
    let fake = FakeRealtime::start(Script {
        responses: vec![ScriptedResponse::speak(600, "Table for four, done.")],
        ..Script::default()
    })
    .await;
    let twilio = FakeTwilio::start(200, r#"{"sid":"CA","status":"completed"}"#);
    let mut server = spawn_binary(
        &fake.url(),
        &[
            ("RUST_LOG", rust_log),
            ("LOG_FORMAT", "json"),
            ("CALLBRIDGE_DRAIN_TIMEOUT_S", "0"),
            ("TWILIO_AUTH_TOKEN", SECRET_AUTH_TOKEN),
            ("OPENAI_API_KEY", SECRET_OPENAI_KEY),
            ("CALLBRIDGE_API_KEY", SECRET_API_KEY),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_API_BASE_URL", &twilio.url),
        ],
    )
    .await;
    let app = TestApp::for_address(&server.address, server.port);

    // A call: signed webhook, stream, the caller speaks, the assistant replies.
    let mut webhook = app.webhook();
    webhook.auth_token = SECRET_AUTH_TOKEN.to_owned();
    let url = app.answer(&webhook).await;
    let stream = MediaStreamClient::connect(&url).await.expect("stream");
    stream.start(&webhook.call_sid, &[]).await.expect("start");
    stream.send_audio(&CALLER_HELLO);
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::PlaybackIdle { played_ms } if played_ms >= 600),
            Duration::from_secs(20),
        )
        .await
        .expect("the reply played");
    // The API: list the calls, then hang this one up (which also completes it through Twilio's REST API).
    let (listed, calls) = api(&server.address, "GET", "/api/calls").await;
    assert_eq!(listed, 200, "{calls}");
    // The server's data directory is fresh: this call is the only one.
    let call_id = match calls["calls"].as_array().map(Vec::as_slice) {
        Some([only]) if only["status"] == "in-progress" => only["id"].as_str(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("the call is listed, in progress: {calls}"))
    .to_owned();
    let (hung_up, view) = api(
        &server.address,
        "POST",
        &format!("/api/calls/{call_id}/hangup"),
    )
    .await;
    assert_eq!(hung_up, 200, "{view}");
    server_closed(&stream, Duration::from_secs(10))
        .await
        .expect("the server hangs up");
    let rest_request = twilio
        .wait_for_request(Duration::from_secs(10))
        .await
        .expect("the REST hang-up");
    let (_, logs) = server.stop().await;

    // The secrets were really in use (so their absence from the logs means something) ...
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{ACCOUNT_SID}:{SECRET_AUTH_TOKEN}"));
    assert_eq!(
        rest_request.authorization.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
    let bearer = format!("Bearer {SECRET_OPENAI_KEY}");
    assert!(
        fake.request_headers()
            .iter()
            .flatten()
            .any(|(name, value)| name == "authorization" && *value == bearer),
        "the Realtime session was opened with the OpenAI key"
    );
    // ... the logs are the `level` logs of this call ...
    assert!(
        logs.lines()
            .any(|l| l.contains("call ended") && l.contains("hung_up_by_api")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("\"level\":\"{level}\""))),
        "{level} lines are logged"
    );
    // ... and none of them shows a secret, as such or in an Authorization header.
    let leaks: Vec<&str> = logs
        .lines()
        .filter(|l| {
            [
                SECRET_AUTH_TOKEN,
                SECRET_OPENAI_KEY,
                SECRET_API_KEY,
                basic.as_str(),
            ]
            .iter()
            .any(|secret| l.contains(secret))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the logs:\n{}",
        leaks.join("\n")
    );
}
