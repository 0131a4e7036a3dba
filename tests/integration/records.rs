//! Call records are never left in progress and a locked database stalls nothing: one record per CallSid however
//! often Twilio's webhook is delivered, a stream token that expires unused finishes its record, and a second
//! process holding the database's write lock while a call ends delays only that call's record.

use std::time::Duration;

use callbridge::calls::model::{CallStatus, CallView};
use callbridge::calls::service::CallService;
use callbridge::simulate::Observation;
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::helpers::{TestApp, TestCall, spawn_app_with, temp_data_dir};

/// Waits up to `timeout` for the record of `call_sid` to exist and satisfy `done`; returns the last one read.
async fn record_when(
    calls: &CallService,
    call_sid: &str,
    timeout: Duration,
    done: impl Fn(&CallView) -> bool,
) -> Option<CallView> {
    let deadline = Instant::now() + timeout;
    loop {
        let view = calls.store().get_by_call_sid(call_sid).expect("reads");
        if view.as_ref().is_some_and(&done) || Instant::now() >= deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_stream_token_that_expires_unused_finishes_its_record() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_STREAM_TOKEN_TTL_S", "1")]).await;
    let webhook = app.webhook();

    let _never_opened = app.answer(&webhook).await;
    let view = record_when(
        &app.calls,
        &webhook.call_sid,
        Duration::from_secs(10),
        |v| v.status.is_terminal(),
    )
    .await
    .expect("the call was stored");

    assert_eq!(view.status, CallStatus::Completed, "{view:?}");
    assert_eq!(
        view.end_reason.as_deref(),
        Some("error:stream_never_opened")
    );
    assert!(view.ended_at.is_some());
}

#[actix_web::test]
async fn a_stream_that_opened_forgets_its_token_at_once_and_outlives_the_token_ttl() {
    let app = spawn_app_with(Script::default(), &[("CALLBRIDGE_STREAM_TOKEN_TTL_S", "1")]).await;

    let call = app.call().await;
    let call_sid = call.webhook.call_sid.clone();

    assert_eq!(
        app.calls.awaited_stream(&call_sid),
        None,
        "the upgrade forgot the token (and stopped its expiry) as the stream opened"
    );
    // Past the token's lifetime: its expiry would have closed a call whose stream never opened.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let view = app
        .calls
        .store()
        .get_by_call_sid(&call_sid)
        .expect("reads")
        .expect("the call was stored");
    assert!(!view.status.is_terminal(), "{view:?}");
    assert_eq!(view.end_reason, None);
    drop(call);
}

#[actix_web::test]
async fn two_hundred_replays_of_one_signed_webhook_give_one_record_and_one_realtime_session() {
    let app = spawn_app_with(
        Script::default(),
        &[("CALLBRIDGE_WEBHOOK_RATE_LIMIT_PER_MIN", "100000")],
    )
    .await;
    let webhook = app.webhook();

    let answers = join_all((0..200).map(|_| webhook.post_incoming())).await;
    assert!(app.calls.writer().flush(Duration::from_secs(10)).await);
    // Give a stray second pre-connect the time to reach the fake, so counting it below means something.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let urls: std::collections::HashSet<String> = answers
        .into_iter()
        .map(|answer| {
            let answer = answer.expect("each replay is answered");
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer
                .stream
                .expect("each replay gets TwiML with a stream")
                .url
        })
        .collect();
    let records: Vec<_> = app
        .calls
        .list_calls(200)
        .expect("listed")
        .into_iter()
        .filter(|c| c.direction == callbridge::calls::Direction::Inbound)
        .collect();
    assert_eq!(records.len(), 1, "one record for one CallSid: {records:?}");
    assert_eq!(
        urls.len(),
        1,
        "every replay is answered with the same stream"
    );
    assert_eq!(
        app.fake.connections(),
        1,
        "one pre-connected Realtime session"
    );
}

/// Starts a call whose assistant speaks at once, and waits for its audio to flow.
async fn speaking_call(app: &TestApp) -> TestCall {
    let call = app.call().await;
    call.expect("assistant audio", Duration::from_secs(10), |o| {
        matches!(o, Observation::Media { .. })
    })
    .await;
    call
}

/// The longest gap between two media frames a call received in `[from, to]` (the last frame before `from` counts
/// as the start).
fn longest_media_gap(call: &TestCall, from: Instant, to: Instant) -> Duration {
    let times: Vec<Instant> = call
        .stream
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, Observation::Media { .. }))
        .map(|e| e.at)
        .collect();
    let start = times
        .iter()
        .rev()
        .find(|t| **t <= from)
        .copied()
        .unwrap_or(from);
    let mut last = start;
    let mut longest = Duration::ZERO;
    for t in times.into_iter().filter(|t| *t > start && *t <= to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_duration_since(last))
}

#[actix_web::test]
async fn a_write_locked_database_while_a_call_ends_stalls_no_other_call_and_the_record_lands_after()
{
    // Arrange: six calls streaming assistant audio (20 ms frames, twice real time), and a seventh that will end.
    let data_dir = temp_data_dir();
    let data_dir_text = data_dir.display().to_string();
    let app = spawn_app_with(
        Script {
            responses: vec![ScriptedResponse::speak(60_000, "A very long story.")],
            delta_ms: 20,
            speed_up: 2.0,
            response_delay: Duration::from_millis(10),
            ..Script::default()
        },
        &[
            ("CALLBRIDGE_DATA_DIR", data_dir_text.as_str()),
            ("CALLBRIDGE_ASSISTANT_SPEAKS_FIRST", "true"),
            ("CALLBRIDGE_MAX_CONCURRENT_CALLS", "20"),
        ],
    )
    .await;
    let mut live = Vec::new();
    for _ in 0..6 {
        live.push(speaking_call(&app).await);
    }
    let ending = speaking_call(&app).await;
    assert!(app.calls.writer().flush(Duration::from_secs(5)).await);
    let address = app.address.clone();

    // Act: a second process's connection holds the write lock for 3 s while the seventh call ends.
    let locker = rusqlite::Connection::open(data_dir.join("callbridge.db")).expect("opens");
    locker
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO idempotency_tokens (token, seen_at_ns) VALUES ('held-by-test', 0);",
        )
        .expect("the test's connection takes the write lock");
    let locked_at = Instant::now();
    ending.stream.stop().await;
    // The call ends (its bridge has queued its record and let go of it) while the store cannot be written.
    let ended = {
        let deadline = Instant::now() + Duration::from_secs(2);
        while app.live_calls.is_live(&ending.webhook.call_sid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        !app.live_calls.is_live(&ending.webhook.call_sid)
    };
    let health_started = Instant::now();
    let health = crate::helpers::get_status(&address, "/health").await;
    let health_took = health_started.elapsed();
    tokio::time::sleep_until(locked_at + Duration::from_secs(3)).await;
    let during = app
        .calls
        .store()
        .get_by_call_sid(&ending.webhook.call_sid)
        .expect("reads while locked")
        .expect("stored before the lock");
    locker
        .execute_batch("COMMIT")
        .expect("the lock is released");
    let released_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = record_when(
        &app.calls,
        &ending.webhook.call_sid,
        Duration::from_secs(10),
        |v| v.end_reason.is_some(),
    )
    .await
    .expect("present");

    // Assert: no frame gap over 50 ms on any other call, /health quick, the record written once the lock went.
    for (n, call) in live.iter().enumerate() {
        let gap = longest_media_gap(call, locked_at, released_at + Duration::from_millis(300));
        assert!(
            gap <= Duration::from_millis(50),
            "call {n} stalled while another process held the database's write lock: {gap:?} without a media \
             frame (limit 50 ms)"
        );
    }
    assert_eq!(health, Some(200));
    assert!(
        health_took <= Duration::from_millis(50),
        "/health took {health_took:?} while the database was locked (limit 50 ms)"
    );
    assert!(
        ended,
        "the call ended within 2 s while the database was locked"
    );
    assert_eq!(during.end_reason, None, "nothing was written while locked");
    assert_eq!(after.end_reason.as_deref(), Some("caller_hung_up"));
    assert_eq!(after.status, CallStatus::Completed);
}
