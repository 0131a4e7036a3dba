//! Caps and policies against the app on port 0: the concurrency cap (inbound calls over it are rejected busy,
//! outbound ones refused), the daily outbound budget, the outbound destination policy and the server-side caller
//! allowlist. Each refusal is checked for what it must not cause: no stream, no Realtime session, no Twilio request.

use std::time::Duration;

use callbridge::calls::service::{PlaceCall, ServiceError};
use callbridge::simulate::{MediaStreamClient, WebhookAnswer};
use serde_json::Value;

use crate::fake_realtime::Script;
use crate::fake_twilio::{FakeTwilio, RecordedRequest, Route};
use crate::helpers::{TestApp, spawn_app_with};

const CALL_SID: &str = "CA99990000111122223333444455556666";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const OUR_NUMBER: &str = "+14155550100";
const CALLEE: &str = "+14155552671";
const API_KEY: &str = "policy-test-api-key";
/// The TwiML that refuses a call with a busy tone.
const REJECT_BUSY: &str = r#"<Reject reason="busy"/>"#;
/// The TwiML that refuses a call as "not in service".
const REJECT_REJECTED: &str = r#"<Reject reason="rejected"/>"#;

/// A fake Twilio that creates every call.
fn twilio_accepting() -> FakeTwilio {
    FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        201,
        &format!(r#"{{"sid":"{CALL_SID}","status":"queued"}}"#),
    )])
}

/// The app able to place calls through `twilio`, with `extra` settings on top.
async fn outbound_app(twilio: &FakeTwilio, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("CALLBRIDGE_API_KEY", API_KEY),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_PHONE_NUMBER", OUR_NUMBER),
        ("TWILIO_API_BASE_URL", twilio.url.as_str()),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(Script::default(), &env).await
}

fn call_to(to: &str) -> PlaceCall {
    PlaceCall {
        to: to.into(),
        instructions: "Ask whether they are open on Sunday.".into(),
        ..PlaceCall::default()
    }
}

/// The `Calls.json` creates Twilio received.
fn creates(twilio: &FakeTwilio) -> Vec<RecordedRequest> {
    twilio
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .collect()
}

/// Waits up to `timeout` for `condition`; false when it never held.
async fn eventually(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// Posts a fresh inbound call's webhook from `from`.
async fn incoming_from(app: &TestApp, from: &str) -> (String, WebhookAnswer) {
    let mut webhook = app.webhook();
    webhook.from = from.to_owned();
    let answer = webhook
        .post_incoming()
        .await
        .expect("the webhook is answered");
    (webhook.call_sid, answer)
}

#[actix_web::test]
async fn an_inbound_call_over_the_concurrency_cap_is_rejected_busy_and_gets_no_stream() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_MAX_CONCURRENT_CALLS", "1")],
    )
    .await;
    let first = app.call().await;
    assert!(
        eventually(Duration::from_secs(5), || app.live_calls.count() == 1).await,
        "the first call is bridged"
    );

    let (second_sid, second) = incoming_from(&app, "+15550100009").await;

    assert_eq!(second.status, 200, "{}", second.body);
    assert!(second.body.contains(REJECT_BUSY), "{}", second.body);
    assert!(second.stream.is_none(), "no stream URL: {}", second.body);
    assert_eq!(app.fake.connections(), 1, "only the first call's session");
    assert!(
        app.calls
            .store()
            .get_by_call_sid(&second_sid)
            .expect("store readable")
            .is_none(),
        "the busy call is not recorded"
    );
    drop(first);
}

#[actix_web::test]
async fn a_call_answered_but_not_yet_streaming_counts_against_the_cap() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_MAX_CONCURRENT_CALLS", "1")],
    )
    .await;
    let (_first_sid, first) = incoming_from(&app, "+15550100001").await;
    assert!(first.stream.is_some(), "the first call is answered");

    let (_second_sid, second) = incoming_from(&app, "+15550100002").await;

    assert!(second.body.contains(REJECT_BUSY), "{}", second.body);
    assert!(second.stream.is_none());
}

#[actix_web::test]
async fn a_slot_is_free_again_once_the_call_holding_it_has_ended() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_MAX_CONCURRENT_CALLS", "1")],
    )
    .await;
    let first = app.call().await;
    first.stream.stop().await;
    app.record(&first.webhook.call_sid, Duration::from_secs(10))
        .await;
    assert!(
        eventually(Duration::from_secs(5), || app.live_calls.count() == 0).await,
        "the first call is no longer live"
    );

    let (_sid, next) = incoming_from(&app, "+15550100003").await;

    assert!(
        next.stream.is_some(),
        "a stream for the next call: {}",
        next.body
    );
}

#[actix_web::test]
async fn an_outbound_call_over_the_concurrency_cap_is_refused_before_twilio_is_asked() {
    let twilio = twilio_accepting();
    let app = outbound_app(&twilio, &[("CALLBRIDGE_MAX_CONCURRENT_CALLS", "1")]).await;
    app.calls
        .place_call(call_to(CALLEE))
        .await
        .expect("the first call is placed");

    let refused = app.calls.place_call(call_to("+14155552672")).await;

    let error = refused.expect_err("the ringing call holds the only slot");
    assert!(
        matches!(error, ServiceError::TooManyCalls { max: 1 }),
        "{error:?}"
    );
    assert_eq!(error.code(), "too_many_calls");
    assert!(
        error
            .to_string()
            .contains("CALLBRIDGE_MAX_CONCURRENT_CALLS"),
        "{error}"
    );
    assert_eq!(creates(&twilio).len(), 1, "Twilio saw the first call only");
}

#[actix_web::test]
async fn the_daily_budget_holds() {
    let twilio = twilio_accepting();
    let app = outbound_app(&twilio, &[("CALLBRIDGE_DAILY_OUTBOUND_BUDGET", "2")]).await;
    for n in 1..=2 {
        app.calls
            .place_call(call_to(CALLEE))
            .await
            .unwrap_or_else(|e| panic!("call {n} is within the budget: {e}"));
    }

    let third = app.calls.place_call(call_to(CALLEE)).await;

    let error = third.expect_err("the budget is used up");
    assert_eq!(error.code(), "daily_budget_exhausted");
    assert!(
        error
            .to_string()
            .contains("CALLBRIDGE_DAILY_OUTBOUND_BUDGET"),
        "{error}"
    );
    assert_eq!(creates(&twilio).len(), 2, "Twilio saw two creates");
}

#[actix_web::test]
async fn a_call_twilio_refused_still_uses_the_budget() {
    let twilio = FakeTwilio::start_routes(vec![Route::new(
        "POST",
        "/Calls.json",
        400,
        r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#,
    )]);
    let app = outbound_app(&twilio, &[("CALLBRIDGE_DAILY_OUTBOUND_BUDGET", "1")]).await;
    let first = app.calls.place_call(call_to(CALLEE)).await;
    assert_eq!(first.expect_err("Twilio refuses").code(), "twilio_error");

    let second = app.calls.place_call(call_to(CALLEE)).await;

    assert_eq!(
        second.expect_err("the attempt counted").code(),
        "daily_budget_exhausted"
    );
    assert_eq!(creates(&twilio).len(), 1);
}

#[actix_web::test]
async fn refused_destinations_never_reach_twilio() {
    let twilio = twilio_accepting();
    // The test settings allow +1 and +44.
    let app = outbound_app(&twilio, &[]).await;

    for (to, why) in [
        ("+33612345678", "not under +1 or +44"),
        ("+19005550100", "US premium rate under +1"),
        ("+449098790000", "UK premium rate under +44"),
    ] {
        let refused = app.calls.place_call(call_to(to)).await;

        let error = refused.expect_err(why);
        assert_eq!(error.code(), "destination_not_allowed", "{why}: {error}");
    }
    assert!(creates(&twilio).is_empty(), "{:?}", twilio.requests());
    assert!(
        app.calls.list_calls(10).expect("listed").is_empty(),
        "refused calls are not stored"
    );
    app.calls
        .place_call(call_to(CALLEE))
        .await
        .expect("an ordinary US number is allowed");
    assert_eq!(creates(&twilio).len(), 1);
}

#[actix_web::test]
async fn a_premium_number_listed_exactly_is_called() {
    let twilio = twilio_accepting();
    let app = outbound_app(
        &twilio,
        &[("CALLBRIDGE_OUTBOUND_ALLOWED_NUMBERS", "+19005550100")],
    )
    .await;

    let placed = app.calls.place_call(call_to("+19005550100")).await;

    placed.expect("listed exactly");
    let create = creates(&twilio);
    assert_eq!(create.len(), 1);
    assert!(
        create[0]
            .form
            .contains(&("To".to_owned(), "+19005550100".to_owned())),
        "{:?}",
        create[0].form
    );
}

#[actix_web::test]
async fn with_the_default_policy_the_api_refuses_with_403_naming_the_settings() {
    let twilio = twilio_accepting();
    let app = outbound_app(&twilio, &[("CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES", "")]).await;

    let mut response = awc::Client::default()
        .post(format!("{}/api/calls", app.address))
        .bearer_auth(API_KEY)
        .send_json(&serde_json::json!({"to": CALLEE, "instructions": "Say hello."}))
        .await
        .expect("the API answers");

    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "destination_not_allowed", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("CALLBRIDGE_OUTBOUND_ALLOWED_PREFIXES")
            && message.contains("CALLBRIDGE_OUTBOUND_ALLOWED_NUMBERS"),
        "{message}"
    );
    assert!(creates(&twilio).is_empty());
}

#[actix_web::test]
async fn only_listed_callers_get_a_stream() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_ALLOWED_CALLERS", "+15550100001,+442071838750")],
    )
    .await;

    let mut refused = Vec::new();
    for from in ["+15550109999", "anonymous", ""] {
        let (call_sid, answer) = incoming_from(&app, from).await;
        refused.push((from, call_sid, answer));
    }
    let (_listed_sid, listed) = incoming_from(&app, "+15550100001").await;

    for (from, call_sid, answer) in &refused {
        assert_eq!(answer.status, 200, "{from:?}: {}", answer.body);
        assert!(
            answer.body.contains(REJECT_REJECTED),
            "{from:?}: {}",
            answer.body
        );
        assert!(answer.stream.is_none(), "{from:?}: no stream token");
        assert!(
            app.calls
                .store()
                .get_by_call_sid(call_sid)
                .expect("store readable")
                .is_none(),
            "{from:?}: not recorded"
        );
    }
    let stream = listed.stream.expect("the listed caller gets a stream");
    let url = callbridge::simulate::local_stream_url(&stream.url, &app.address).expect("a URL");
    let client = MediaStreamClient::connect(&url)
        .await
        .expect("the listed caller's stream opens");
    drop(client);
    assert!(
        eventually(Duration::from_secs(5), || app.fake.connections() >= 1).await,
        "the listed caller's session opens"
    );
    assert_eq!(
        app.fake.connections(),
        1,
        "no Realtime session for the refused callers"
    );
}
