//! Abuse limits over HTTP: per-IP and per-key rate limits (429 with `Retry-After`, nothing done), body sizes (413)
//! and clients that never finish their request (cut off after the request timeout).

use std::time::{Duration, Instant};

use callbridge::simulate::{MediaStreamClient, SimulateError, WebhookCall};
use callbridge::twilio::signature::RequestValidator;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::fake_realtime::Script;
use crate::fake_twilio::{FakeTwilio, Route};
use crate::helpers::{AUTH_TOKEN, PUBLIC_URL, TestApp, get_status, spawn_app_with};

const API_KEY: &str = "test-api-key";
const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// An HTTP answer: status, `Retry-After` (seconds) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after_s: Option<u64>,
    body: String,
}

async fn answer_of<S>(sent: Result<awc::ClientResponse<S>, awc::error::SendRequestError>) -> Answer
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut response = sent.expect("the server answers");
    let body = response.body().await.expect("a body");
    Answer {
        status: response.status().as_u16(),
        retry_after_s: response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Posts `webhook`'s inbound-call form to `/incoming-call`, signed as Twilio signs it, with `extra` form fields
/// appended and `X-Forwarded-For: forwarded_for` when given.
async fn post_incoming(
    app: &TestApp,
    webhook: &WebhookCall,
    forwarded_for: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut params = webhook.form_params();
    params.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let signature =
        RequestValidator::new(AUTH_TOKEN).sign(&format!("{PUBLIC_URL}/incoming-call"), &params);
    let mut request = awc::Client::default()
        .post(format!("{}/incoming-call", app.address))
        .insert_header(("X-Twilio-Signature", signature));
    if let Some(forwarded_for) = forwarded_for {
        request = request.insert_header(("X-Forwarded-For", forwarded_for));
    }
    answer_of(request.send_form(&params).await).await
}

/// Sends `method path` under the app with `Authorization: Bearer key` and a JSON `body` when given.
async fn api(app: &TestApp, method: &str, path: &str, key: &str, body: Option<&str>) -> Answer {
    let client = awc::Client::default();
    let url = format!("{}{path}", app.address);
    let request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        other => panic!("no {other} here"),
    }
    .bearer_auth(key)
    .insert_header(("Accept", "application/json, text/event-stream"));
    let sent = match body {
        Some(body) => {
            request
                .insert_header(("Content-Type", "application/json"))
                .send_body(body.to_owned())
                .await
        }
        None => request.send().await,
    };
    answer_of(sent).await
}

fn assert_rate_limited(answer: &Answer) {
    assert_eq!(answer.status, 429, "{answer:?}");
    let retry_after_s = answer
        .retry_after_s
        .expect("a Retry-After in whole seconds");
    assert!(
        (1..=60).contains(&retry_after_s),
        "Retry-After {retry_after_s}"
    );
}

/// A fake Twilio that creates every call.
fn twilio_accepting() -> FakeTwilio {
    FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        201,
        &format!(r#"{{"sid":"{CALL_SID}","status":"queued"}}"#),
    )])
}

fn calls_created(twilio: &FakeTwilio) -> usize {
    twilio
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .count()
}

#[actix_web::test]
async fn a_webhook_past_the_limit_gets_429_with_retry_after_and_opens_no_session() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "2")],
    )
    .await;
    for _ in 0..2 {
        let answer = post_incoming(&app, &app.webhook(), None, &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sessions_before = app.fake.connections();

    let answer = post_incoming(&app, &app.webhook(), None, &[]).await;

    assert_rate_limited(&answer);
    assert!(
        !answer.body.contains("<Stream"),
        "no stream token: {}",
        answer.body
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.fake.connections(),
        sessions_before,
        "no OpenAI session for a refused webhook"
    );
}

#[actix_web::test]
async fn a_media_stream_upgrade_past_the_limit_gets_429_and_starts_no_call() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "2")],
    )
    .await;
    let stream_url = app.answer(&app.webhook()).await;
    let other = post_incoming(&app, &app.webhook(), None, &[]).await;
    assert_eq!(other.status, 200, "{other:?}");

    let upgrade = MediaStreamClient::connect(&stream_url).await;

    match upgrade {
        Err(SimulateError::Rejected(status)) => assert_eq!(status, 429),
        Err(other) => panic!("expected a 429 refusal, got {other}"),
        Ok(_) => panic!("the upgrade past the limit was accepted"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.live_calls.count(), 0, "no call started");
}

#[actix_web::test]
async fn another_client_ip_is_unaffected_when_forwarded_headers_are_trusted() {
    let app = spawn_app_with(
        Script::default(),
        &[
            ("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "1"),
            ("CALLBRIDGE_TRUST_FORWARDED_HEADERS", "true"),
        ],
    )
    .await;
    let first = post_incoming(&app, &app.webhook(), Some("203.0.113.1"), &[]).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = post_incoming(&app, &app.webhook(), Some("203.0.113.1"), &[]).await;
    assert_rate_limited(&again);

    let other_client = post_incoming(&app, &app.webhook(), Some("203.0.113.2"), &[]).await;

    assert_eq!(other_client.status, 200, "{other_client:?}");
    assert!(
        other_client.body.contains("<Stream"),
        "{}",
        other_client.body
    );
}

#[actix_web::test]
async fn x_forwarded_for_is_ignored_when_forwarded_headers_are_not_trusted() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "1")],
    )
    .await;
    let first = post_incoming(&app, &app.webhook(), Some("203.0.113.1"), &[]).await;
    assert_eq!(first.status, 200, "{first:?}");

    let claimed_other_client = post_incoming(&app, &app.webhook(), Some("203.0.113.2"), &[]).await;

    assert_rate_limited(&claimed_other_client);
}

#[actix_web::test]
async fn health_and_ready_are_never_rate_limited() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "1")],
    )
    .await;

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get_status(&app.address, "/health").await);
        statuses.push(get_status(&app.address, "/ready").await);
    }

    assert!(statuses.iter().all(|s| *s == Some(200)), "{statuses:?}");
}

#[actix_web::test]
async fn an_api_request_past_the_limit_gets_429_and_places_no_call() {
    let twilio = twilio_accepting();
    let app = spawn_app_with(
        Script::default(),
        &[
            ("CALLBRIDGE_API_KEY", API_KEY),
            ("CALLBRIDGE_API_RATE_LIMIT_PER_MIN", "2"),
            ("CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES", "+1"),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_PHONE_NUMBER", "+15550100000"),
            ("TWILIO_API_BASE_URL", &twilio.url),
        ],
    )
    .await;
    let call = r#"{"to":"+14155552671","instructions":"Ask whether the shop is open on Sunday."}"#;
    let placed = api(&app, "POST", "/api/calls", API_KEY, Some(call)).await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let listed = api(&app, "GET", "/api/calls", API_KEY, None).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(calls_created(&twilio), 1);

    let refused = api(&app, "POST", "/api/calls", API_KEY, Some(call)).await;

    assert_rate_limited(&refused);
    let json: serde_json::Value = serde_json::from_str(&refused.body).expect("a JSON error");
    assert_eq!(json["error"]["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls_created(&twilio), 1, "no call placed past the limit");
}

#[actix_web::test]
async fn guessing_api_keys_does_not_escape_the_limit() {
    let app = spawn_app_with(
        Script::default(),
        &[
            ("CALLBRIDGE_API_KEY", API_KEY),
            ("CALLBRIDGE_API_RATE_LIMIT_PER_MIN", "2"),
        ],
    )
    .await;
    for guess in ["guess-1", "guess-2"] {
        let answer = api(&app, "GET", "/api/calls", guess, None).await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }

    let third_guess = api(&app, "GET", "/api/calls", "guess-3", None).await;

    assert_rate_limited(&third_guess);
}

#[actix_web::test]
async fn mcp_requests_count_against_the_same_api_key() {
    let app = spawn_app_with(
        Script::default(),
        &[
            ("CALLBRIDGE_API_KEY", API_KEY),
            ("CALLBRIDGE_API_RATE_LIMIT_PER_MIN", "1"),
        ],
    )
    .await;
    let listed = api(&app, "GET", "/api/calls", API_KEY, None).await;
    assert_eq!(listed.status, 200, "{listed:?}");

    let mcp = api(
        &app,
        "POST",
        "/mcp",
        API_KEY,
        Some(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
    )
    .await;

    assert_rate_limited(&mcp);
}

#[actix_web::test]
async fn an_oversized_webhook_body_is_refused_with_413() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_MAX_BODY_BYTES", "2048")]).await;
    let normal = post_incoming(&app, &app.webhook(), None, &[]).await;
    assert_eq!(normal.status, 200, "{normal:?}");
    let padding = "x".repeat(4096);

    let oversized = post_incoming(&app, &app.webhook(), None, &[("Padding", &padding)]).await;

    assert_eq!(oversized.status, 413, "{oversized:?}");
}

#[actix_web::test]
async fn the_body_limit_setting_applies_to_the_api_too() {
    let app = spawn_app_with(
        Script::default(),
        &[
            ("CALLBRIDGE_MAX_BODY_BYTES", "2048"),
            ("CALLBRIDGE_API_KEY", API_KEY),
        ],
    )
    .await;
    let body = serde_json::json!({"to": "+14155552671", "instructions": "x".repeat(4096)});

    let mut response = awc::Client::default()
        .post(format!("{}/api/calls", app.address))
        .bearer_auth(API_KEY)
        .send_json(&body)
        .await
        .expect("the API answers");
    let answer: serde_json::Value =
        serde_json::from_slice(&response.body().await.expect("a body")).expect("JSON");

    assert_eq!(response.status().as_u16(), 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("2048"),
        "{answer}"
    );
}

#[actix_web::test]
async fn a_client_that_never_finishes_its_request_is_cut_off_while_others_are_served() {
    let app = spawn_app_with(Script::default(), &[]).await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    slow.write_all(b"POST /incoming-call HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half a request is sent");
    let started = Instant::now();

    let health = get_status(&app.address, "/health").await;
    let stream_url = app.answer(&app.webhook()).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    let elapsed = started.elapsed();

    assert_eq!(health, Some(200), "other requests are served meanwhile");
    assert!(stream_url.starts_with("ws://"), "{stream_url}");
    let read = read.expect("the slow connection is closed within 10 s");
    assert!(read.is_ok(), "{read:?}");
    let answered = String::from_utf8_lossy(&rest);
    assert!(
        answered.is_empty() || answered.starts_with("HTTP/1.1 408"),
        "{answered}"
    );
    assert!(
        elapsed >= Duration::from_secs(4),
        "cut off only after the request timeout, not at once: {elapsed:?}"
    );
}
