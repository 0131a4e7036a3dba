//! Scheduled and retried outbound calls: a busy line tried again after the backoff, a call window that waits for the
//! morning in the callee's time zone, a pending attempt placed by the server after a restart, `hang_up` canceling a
//! pending attempt, and the limits checked when an attempt is placed. Time is a test clock moved forward, not waited
//! for; the fake Twilio creates each attempt's call with its own CallSid, and the tests post Twilio's signed status
//! callbacks for it.

use std::sync::Arc;
use std::time::Duration;

use callbridge::calls::clock::{Clock, TestClock};
use callbridge::calls::model::{CallStatus, CallView};
use callbridge::calls::schedule::{RetryOn, RetryPlan};
use callbridge::calls::scheduler::MAX_IDLE;
use callbridge::calls::service::{PlaceCall, ServiceError};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use crate::fake_realtime::Script;
use crate::fake_twilio::{FakeTwilio, RecordedRequest, Route};
use crate::helpers::{StopApp, TestApp, post_signed, spawn_app_with_clock, temp_data_dir};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const OUR_NUMBER: &str = "+14155550100";
const CALLEE: &str = "+14155552671";
const API_KEY: &str = "schedule-test-api-key";
/// How long to watch for a request that must not come: longer than the scheduler's longest sleep.
const QUIET: Duration = Duration::from_millis(1500);
const TIMEOUT: Duration = Duration::from_secs(10);

/// A fake Twilio that creates each call with a CallSid of its own: `CA…0001` for the first request, and so on.
fn twilio() -> FakeTwilio {
    FakeTwilio::start_routes(vec![
        Route::new(
            "POST",
            "/Calls.json",
            201,
            r#"{"sid":"CA000000000000000000000000000{n}","status":"queued"}"#,
        ),
        Route::new("POST", ".json", 200, r#"{"status":"canceled"}"#),
    ])
}

async fn app(twilio: &FakeTwilio, clock: &TestClock, data_dir: &str) -> (TestApp, StopApp) {
    app_on(twilio, clock, data_dir, None).await
}

/// [`app`] with its records in PostgreSQL at `database_url` when given.
async fn app_on(
    twilio: &FakeTwilio,
    clock: &TestClock,
    data_dir: &str,
    database_url: Option<&str>,
) -> (TestApp, StopApp) {
    let mut env = vec![
        ("CALLBRIDGE_API_KEY", API_KEY),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_PHONE_NUMBER", OUR_NUMBER),
        ("TWILIO_API_BASE_URL", twilio.url.as_str()),
        ("CALLBRIDGE_DATA_DIR", data_dir),
    ];
    env.extend(database_url.map(|url| ("CALLBRIDGE_DATABASE_URL", url)));
    spawn_app_with_clock(Script::default(), &env, Arc::new(clock.clone())).await
}

fn fresh_dir() -> String {
    temp_data_dir().display().to_string()
}

fn request() -> PlaceCall {
    PlaceCall {
        to: CALLEE.into(),
        instructions: "Ask whether the shop has the blue kettle in stock.".into(),
        ..PlaceCall::default()
    }
}

fn busy_then_once_more() -> RetryPlan {
    RetryPlan {
        max_attempts: 2,
        backoff_s: 120,
        retry_on: vec![RetryOn::Busy],
    }
}

/// The calls Twilio was asked to create.
fn creates(twilio: &FakeTwilio) -> Vec<RecordedRequest> {
    twilio
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .collect()
}

/// Waits until Twilio has been asked to create `n` calls.
async fn wait_for_creates(twilio: &FakeTwilio, n: usize) -> Vec<RecordedRequest> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let seen = creates(twilio);
        if seen.len() >= n {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Twilio was asked to create {} calls, not {n}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the call (waking on each change) until `done` says so.
async fn call_until(app: &TestApp, id: &str, done: impl Fn(&CallView) -> bool) -> CallView {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let call = app
            .calls
            .get_call(id, Some(1))
            .await
            .expect("the call reads");
        if done(&call) {
            return call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never got there: {call:?}"
        );
    }
}

/// Twilio's signed status callback for `call_sid`.
async fn twilio_reports(app: &TestApp, call_sid: &str, status: &str) {
    let (code, body) = post_signed(
        &app.address,
        "/call-status",
        &[
            ("CallSid", call_sid),
            ("AccountSid", ACCOUNT_SID),
            ("CallStatus", status),
        ],
        None,
        Some(&format!("{call_sid}-{status}")),
    )
    .await;
    assert_eq!(code, 204, "{body}");
}

fn form_value(request: &RecordedRequest, name: &str) -> Option<String> {
    request
        .form
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[actix_web::test]
async fn a_busy_line_is_tried_again_after_the_backoff_and_both_callsids_stay_on_the_one_record() {
    busy_line_is_tried_again(None).await;
}

#[actix_web::test]
async fn with_the_records_in_postgresql_a_busy_line_is_tried_again_after_the_backoff() {
    let schema = crate::pg_store::Schema::create();
    busy_line_is_tried_again(Some(&schema.url())).await;
}

/// A busy first attempt, retried after the backoff, both CallSids on the one record; the records in PostgreSQL
/// at `database_url` when given, else in SQLite.
async fn busy_line_is_tried_again(database_url: Option<&str>) {
    let twilio = twilio();
    let clock = TestClock::starting_at(OffsetDateTime::now_utc());
    let (app, _stop) = app_on(&twilio, &clock, &fresh_dir(), database_url).await;

    let placed = app
        .calls
        .place_call(PlaceCall {
            retry: Some(busy_then_once_more()),
            ..request()
        })
        .await
        .expect("scheduled");
    let first = wait_for_creates(&twilio, 1).await;
    assert_eq!(
        form_value(&first[0], "Url").as_deref(),
        Some(format!("https://callbridge.test/outbound-call/{}", placed.id).as_str())
    );
    let first_sid = "CA0000000000000000000000000000001";
    call_until(&app, &placed.id, |c| {
        c.call_sid.as_deref() == Some(first_sid)
    })
    .await;

    twilio_reports(&app, first_sid, "ringing").await;
    let busy_at = clock.now();
    twilio_reports(&app, first_sid, "busy").await;
    let pending = call_until(&app, &placed.id, |c| c.status == CallStatus::RetryPending).await;
    let due = pending.schedule.next_attempt_at.expect("a due time");
    assert!(
        due >= busy_at + time::Duration::seconds(120),
        "due {due}, busy at {busy_at}"
    );
    app.calls.wake_scheduler();
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        creates(&twilio).len(),
        1,
        "no second attempt before the backoff"
    );

    clock.advance(time::Duration::seconds(121));
    app.calls.wake_scheduler();
    wait_for_creates(&twilio, 2).await;
    let second_sid = "CA0000000000000000000000000000002";
    call_until(&app, &placed.id, |c| {
        c.call_sid.as_deref() == Some(second_sid)
    })
    .await;
    twilio_reports(&app, second_sid, "ringing").await;
    twilio_reports(&app, second_sid, "in-progress").await;
    twilio_reports(&app, second_sid, "completed").await;
    twilio_reports(&app, first_sid, "completed").await; // a late, stray callback of the first attempt

    let call = call_until(&app, &placed.id, |c| c.status.is_terminal()).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.call_sid.as_deref(), Some(second_sid));
    let attempts: Vec<(Option<&str>, CallStatus, Option<&str>)> = call
        .schedule
        .attempts
        .iter()
        .map(|a| (a.call_sid.as_deref(), a.status, a.result.as_deref()))
        .collect();
    assert_eq!(
        attempts,
        [
            (Some(first_sid), CallStatus::Busy, Some("busy, retried")),
            (Some(second_sid), CallStatus::Completed, Some("completed")),
        ]
    );
    assert!(call.schedule.attempts[0].ended_at.is_some());
    let statuses: Vec<CallStatus> = call.status_timeline.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            CallStatus::Scheduled,
            CallStatus::Queued,
            CallStatus::Ringing,
            CallStatus::RetryPending,
            CallStatus::Queued,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
        ]
    );
    assert_eq!(call.schedule.next_attempt_at, None);
}

#[actix_web::test]
async fn a_call_window_where_it_is_night_schedules_the_call_for_the_morning() {
    let twilio = twilio();
    // 02:30 UTC on 15 January is 03:30 in Berlin.
    let clock = TestClock::starting_at(datetime!(2026-01-15 02:30 UTC));
    let (app, _stop) = app(&twilio, &clock, &fresh_dir()).await;

    let placed = app
        .calls
        .place_call(PlaceCall {
            call_window: Some("09:00-18:00 Europe/Berlin".into()),
            ..request()
        })
        .await
        .expect("scheduled");
    app.calls.wake_scheduler();
    tokio::time::sleep(QUIET).await;
    let at_night = creates(&twilio).len();

    clock.advance(time::Duration::minutes(5 * 60 + 31)); // 08:01 UTC, 09:01 in Berlin
    app.calls.wake_scheduler();
    let morning = wait_for_creates(&twilio, 1).await;

    assert_eq!(placed.status, CallStatus::Scheduled);
    assert_eq!(
        placed.schedule.next_attempt_at,
        Some(datetime!(2026-01-15 08:00 UTC)),
        "09:00 in Berlin"
    );
    assert_eq!(
        placed.schedule.call_window.as_deref(),
        Some("09:00-18:00 Europe/Berlin")
    );
    assert_eq!(at_night, 0, "nobody is called at night");
    assert_eq!(form_value(&morning[0], "To").as_deref(), Some(CALLEE));
    let call = call_until(&app, &placed.id, |c| c.call_sid.is_some()).await;
    assert!(call.schedule.attempts[0].started_at >= datetime!(2026-01-15 08:00 UTC));
}

#[actix_web::test]
async fn a_pending_attempt_is_still_placed_after_a_restart() {
    let twilio = twilio();
    let data_dir = fresh_dir();
    let now = OffsetDateTime::now_utc();
    let first_clock = TestClock::starting_at(now);
    let (first, stop) = app(&twilio, &first_clock, &data_dir).await;
    let not_before = (now + time::Duration::hours(1))
        .format(&Rfc3339)
        .expect("formats");
    let placed = first
        .calls
        .place_call(PlaceCall {
            not_before: Some(not_before),
            ..request()
        })
        .await
        .expect("scheduled");
    stop.stop().await;
    assert!(creates(&twilio).is_empty(), "not due before the restart");

    let later = TestClock::starting_at(now + time::Duration::minutes(61));
    let (second, _stop) = app(&twilio, &later, &data_dir).await;
    let placed_after = wait_for_creates(&twilio, 1).await;

    assert_eq!(
        form_value(&placed_after[0], "Url").as_deref(),
        Some(format!("https://callbridge.test/outbound-call/{}", placed.id).as_str())
    );
    let call = call_until(&second, &placed.id, |c| c.call_sid.is_some()).await;
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(call.schedule.attempts.len(), 1);
    assert_eq!(
        call.schedule.attempts[0].call_sid.as_deref(),
        Some("CA0000000000000000000000000000001")
    );
}

#[actix_web::test]
async fn hang_up_cancels_a_pending_attempt() {
    let twilio = twilio();
    let clock = TestClock::starting_at(OffsetDateTime::now_utc());
    let (app, _stop) = app(&twilio, &clock, &fresh_dir()).await;
    let placed = app
        .calls
        .place_call(PlaceCall {
            retry: Some(busy_then_once_more()),
            ..request()
        })
        .await
        .expect("scheduled");
    wait_for_creates(&twilio, 1).await;
    let sid = "CA0000000000000000000000000000001";
    call_until(&app, &placed.id, |c| c.call_sid.as_deref() == Some(sid)).await;
    twilio_reports(&app, sid, "busy").await;
    call_until(&app, &placed.id, |c| c.status == CallStatus::RetryPending).await;

    let hung_up = app.calls.hang_up(&placed.id).await.expect("hung up");
    clock.advance(time::Duration::seconds(600));
    app.calls.wake_scheduler();
    tokio::time::sleep(QUIET + MAX_IDLE).await;
    let again = app.calls.hang_up(&placed.id).await;

    assert_eq!(hung_up.status, CallStatus::Canceled);
    assert_eq!(hung_up.schedule.next_attempt_at, None);
    assert_eq!(
        creates(&twilio).len(),
        1,
        "the pending attempt was never placed"
    );
    assert!(
        matches!(again, Err(ServiceError::AlreadyEnded { .. })),
        "{again:?}"
    );
}

#[actix_web::test]
async fn an_attempt_over_the_daily_budget_ends_the_call_with_the_reason() {
    let twilio = twilio();
    // Midday UTC: the daily budget counts since UTC midnight, and the 11 minutes below must not cross it.
    let clock =
        TestClock::starting_at(OffsetDateTime::now_utc().replace_time(time::macros::time!(12:00)));
    let (app, _stop) = spawn_app_with_clock(
        Script::default(),
        &[
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
            ("TWILIO_PHONE_NUMBER", OUR_NUMBER),
            ("TWILIO_API_BASE_URL", &twilio.url),
            ("CALLBRIDGE_DAILY_OUTBOUND_BUDGET", "1"),
        ],
        Arc::new(clock.clone()),
    )
    .await;
    let not_before = (clock.now() + time::Duration::minutes(10))
        .format(&Rfc3339)
        .expect("formats");
    let scheduled = app
        .calls
        .place_call(PlaceCall {
            not_before: Some(not_before),
            ..request()
        })
        .await
        .expect("scheduled: the budget is checked when the attempt is placed");
    app.calls
        .place_call(request())
        .await
        .expect("placed at once");

    clock.advance(time::Duration::minutes(11));
    app.calls.wake_scheduler();
    let call = call_until(&app, &scheduled.id, |c| c.status.is_terminal()).await;

    assert_eq!(call.status, CallStatus::Failed);
    let message = call.error.expect("the reason").message;
    assert!(
        message.contains("not placed: the daily budget"),
        "{message}"
    );
    assert_eq!(creates(&twilio).len(), 1, "only the call placed at once");
    assert!(call.schedule.attempts.is_empty());
}

async fn api_place(app: &TestApp, body: Value) -> (u16, Value) {
    let mut response = awc::Client::default()
        .post(format!("{}/api/calls", app.address))
        .bearer_auth(API_KEY)
        .send_json(&body)
        .await
        .expect("the API answers");
    let bytes = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn a_bad_call_window_not_before_or_retry_is_a_clear_400_and_nothing_is_stored() {
    let twilio = twilio();
    let clock = TestClock::starting_at(OffsetDateTime::now_utc());
    let (app, _stop) = app(&twilio, &clock, &fresh_dir()).await;
    let base = json!({"to": CALLEE, "instructions": "Say hello."});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };

    let zone = api_place(&app, with("call_window", json!("09:00-18:00 Mars/Olympus"))).await;
    let hours = api_place(&app, with("call_window", json!("9am-6pm Europe/Berlin"))).await;
    let time = api_place(&app, with("not_before", json!("tomorrow at nine"))).await;
    let attempts = api_place(&app, with("retry", json!({"max_attempts": 50}))).await;
    let result = api_place(&app, with("retry", json!({"retry_on": ["completed"]}))).await;
    let later = (clock.now() + time::Duration::hours(1))
        .format(&Rfc3339)
        .expect("formats");
    let mut good = with("call_window", json!("00:00-23:59 UTC"));
    good["not_before"] = json!(later);
    let good = api_place(&app, good).await;

    for (answer, says) in [
        (&zone, "not an IANA time zone"),
        (&hours, "HH:MM-HH:MM"),
        (&time, "RFC 3339"),
        (&attempts, "max_attempts"),
        (&result, "completed"),
    ] {
        assert_eq!(answer.0, 400, "{answer:?}");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says}: {answer:?}");
    }
    assert_eq!(good.0, 201, "{good:?}");
    assert_eq!(good.1["status"], "scheduled");
    assert_eq!(good.1["call_window"], "00:00-23:59 UTC");
    assert_eq!(
        app.calls.list_calls(10).expect("listed").len(),
        1,
        "only the good request is stored"
    );
}

#[actix_web::test]
async fn the_api_client_of_the_cli_and_stdio_mcp_sends_the_schedule_fields() {
    let twilio = twilio();
    let clock = TestClock::starting_at(datetime!(2026-01-15 02:30 UTC));
    let (app, _stop) = app(&twilio, &clock, &fresh_dir()).await;
    let client = callbridge::cli::api_client::ApiClient::new(
        url::Url::parse(&app.address).expect("a URL"),
        secrecy::SecretString::from(API_KEY),
    );

    let placed = client
        .place_call(PlaceCall {
            retry: Some(busy_then_once_more()),
            not_before: Some("2026-01-15T04:00:00Z".into()),
            call_window: Some("09:00-18:00 Europe/Berlin".into()),
            ..request()
        })
        .await
        .expect("scheduled");

    assert_eq!(placed.status, CallStatus::Scheduled);
    assert_eq!(placed.schedule.retry, Some(busy_then_once_more()));
    assert_eq!(
        placed.schedule.not_before,
        Some(datetime!(2026-01-15 04:00 UTC))
    );
    assert_eq!(
        placed.schedule.next_attempt_at,
        Some(datetime!(2026-01-15 08:00 UTC))
    );
}
