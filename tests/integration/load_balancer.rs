//! Several instances behind a real load balancer: two `callbridge serve` processes sharing Redis and PostgreSQL, behind
//! HAProxy running deploy/haproxy/haproxy.cfg on loopback (see `fleet_harness`). A webhook and its media stream may
//! land on different instances; a stream token is single use across the fleet; live-call control reaches the
//! instance holding the call; the concurrency cap counts the whole fleet; a killed instance's calls are closed by
//! another after its lease; a stopped one drains while the other takes the new calls.
//!
//! Needs `make services` (Redis and PostgreSQL: `CALLBRIDGE_TEST_REDIS_URL`, `CALLBRIDGE_TEST_DATABASE_URL`), `psql`
//! and `haproxy`.

use std::time::Duration;

use callbridge::simulate::{MediaStreamClient, Observation, SimulateError, WebhookCall};
use serde_json::json;

use crate::fake_realtime::{Script, ScriptedResponse};
use crate::fleet_harness::{
    Fleet, LEASE_S, api, call_of, call_via, holds, incoming_at, stream_url_at, wait_for_call,
    wait_until_held,
};
use crate::helpers::{CALLER_HELLO, server_closed};

/// `<Reject reason="busy"/>`: the answer to an inbound call over the concurrency cap.
const REJECT_BUSY: &str = r#"<Reject reason="busy"/>"#;

/// Waits until the caller hears the assistant on `stream` (the relay works end to end), failing after 15 s.
async fn expect_assistant_audio(stream: &MediaStreamClient, what: &str) {
    stream
        .wait_for(
            |e| matches!(e.kind, Observation::Media { .. }),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|| panic!("{what}: no assistant audio; saw {:#?}", stream.events()));
}

#[actix_web::test]
async fn a_call_whose_webhook_lands_on_one_instance_and_stream_on_the_other_works() {
    let fleet = Fleet::start(Script::default(), &[]).await;

    // Act: Twilio's webhook reaches A, the media stream of A's TwiML reaches B.
    let (webhook, stream) = call_via(&fleet.a.address, &fleet.b.address).await;
    stream.send_audio(&CALLER_HELLO);

    // Assert: B relays it, the caller hears the assistant, and hanging up stores the ended call for every instance.
    expect_assistant_audio(&stream, "a stream on B of a call answered by A").await;
    assert!(holds(&fleet.b, &webhook.call_sid), "B relays the call");
    assert!(!holds(&fleet.a, &webhook.call_sid), "A does not");
    stream.stop().await;
    let call = wait_for_call(
        &fleet.a.address,
        &webhook.call_sid,
        Duration::from_secs(15),
        "the ended call, read on A",
        |call| call["end_reason"].is_string(),
    )
    .await;
    assert_eq!(call["end_reason"], "caller_hung_up", "{call}");
    assert_eq!(call["status"], "completed", "{call}");
}

#[actix_web::test]
async fn calls_through_the_balancer_are_spread_over_both_instances_and_each_one_works() {
    let fleet = Fleet::start(Script::default(), &[]).await;

    // Act: four calls, webhooks and streams all through HAProxy (round robin).
    let mut calls = Vec::new();
    for _ in 0..4 {
        let (webhook, stream) = call_via(&fleet.lb.address, &fleet.lb.address).await;
        stream.send_audio(&CALLER_HELLO);
        calls.push((webhook, stream));
    }

    // Assert: every caller hears the assistant, and both instances took requests.
    for (webhook, stream) in &calls {
        expect_assistant_audio(stream, &webhook.call_sid).await;
    }
    let (a, b) = fleet.lb.stats().await.expect("haproxy's statistics");
    assert!(
        a.sessions_total >= 2 && b.sessions_total >= 2,
        "round robin over both instances: {a:?} {b:?}"
    );
}

#[actix_web::test]
async fn a_stream_token_used_on_one_instance_is_refused_on_the_other() {
    let fleet = Fleet::start(Script::default(), &[]).await;
    let (first, first_answer) = incoming_at(&fleet.a.address).await;
    let (_second, second_answer) = incoming_at(&fleet.a.address).await;
    let first_on_a = MediaStreamClient::connect(&stream_url_at(&first_answer, &fleet.a.address))
        .await
        .expect("A accepts its own token");
    first_on_a.start(&first.call_sid, &[]).await.expect("start");

    // Act: the used token on B, then an unused token of A on B.
    let used_on_b =
        MediaStreamClient::connect(&stream_url_at(&first_answer, &fleet.b.address)).await;
    let unused_on_b =
        MediaStreamClient::connect(&stream_url_at(&second_answer, &fleet.b.address)).await;

    // Assert: B refuses the used one (403, no socket), yet accepts a token of A's that nobody used.
    assert!(
        matches!(used_on_b, Err(SimulateError::Rejected(403))),
        "{used_on_b:?}"
    );
    assert!(
        unused_on_b.is_ok(),
        "B knows A's tokens: {:?}",
        unused_on_b.err()
    );
}

/// A call whose webhook and stream both reached B, once B relays it: its webhook, its stream and its call id (read on
/// A, from the shared records).
async fn call_held_by_b(fleet: &Fleet) -> (WebhookCall, MediaStreamClient, String) {
    let (webhook, stream) = call_via(&fleet.b.address, &fleet.b.address).await;
    assert!(
        wait_until_held(&fleet.b, &webhook.call_sid, Duration::from_secs(10)).await,
        "B relays the call"
    );
    let id = call_of(&fleet.a.address, &webhook.call_sid)
        .await
        .expect("A reads the call B stored")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    (webhook, stream, id)
}

#[actix_web::test]
async fn hang_up_sent_to_one_instance_ends_a_call_held_by_the_other() {
    let fleet = Fleet::start(Script::default(), &[]).await;
    let (webhook, stream, id) = call_held_by_b(&fleet).await;

    // Act: the hang-up reaches A (no Twilio REST configured: only B can end it).
    let (status, answer) = api(
        &fleet.a.address,
        "POST",
        &format!("/api/calls/{id}/hangup"),
        None,
    )
    .await;

    // Assert: B closes the stream and stores why.
    assert_eq!(status, 200, "{answer}");
    server_closed(&stream, Duration::from_secs(10))
        .await
        .expect("B hangs up the call");
    let call = wait_for_call(
        &fleet.a.address,
        &webhook.call_sid,
        Duration::from_secs(10),
        "the hung-up call",
        |call| call["end_reason"].is_string(),
    )
    .await;
    assert_eq!(call["end_reason"], "hung_up_by_api", "{call}");
}

#[actix_web::test]
async fn instruct_call_sent_to_one_instance_reaches_a_call_held_by_the_other() {
    const INSTRUCTION: &str = "Offer the caller a window seat.";
    let fleet = Fleet::start(Script::default(), &[]).await;
    let (_webhook, stream, id) = call_held_by_b(&fleet).await;

    // Act
    let (status, answer) = api(
        &fleet.a.address,
        "POST",
        &format!("/api/calls/{id}/instruct"),
        Some(json!({"text": INSTRUCTION})),
    )
    .await;

    // Assert: accepted on A, and B's Realtime session is given the instruction.
    assert_eq!(status, 202, "{answer}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let given = fleet
            .fake
            .events_of_type("conversation.item.create")
            .iter()
            .any(|event| event.to_string().contains(INSTRUCTION));
        if given {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never got the instruction: {:#?}",
            fleet.fake.client_events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
}

#[actix_web::test]
async fn a_concurrency_cap_of_two_refuses_the_third_call_whichever_instance_gets_it() {
    let fleet = Fleet::start(
        Script::default(),
        &[("CALLBRIDGE_MAX_CONCURRENT_CALLS", "2")],
    )
    .await;
    let (on_a, stream_a) = call_via(&fleet.a.address, &fleet.a.address).await;
    let (on_b, _stream_b) = call_via(&fleet.b.address, &fleet.b.address).await;
    assert!(wait_until_held(&fleet.a, &on_a.call_sid, Duration::from_secs(10)).await);
    assert!(wait_until_held(&fleet.b, &on_b.call_sid, Duration::from_secs(10)).await);

    // Act: a third call reaches A, another reaches B.
    let (_, third_on_a) = incoming_at(&fleet.a.address).await;
    let (_, third_on_b) = incoming_at(&fleet.b.address).await;

    // Assert: both busy, with no stream.
    for (instance, answer) in [("A", &third_on_a), ("B", &third_on_b)] {
        assert_eq!(answer.status, 200, "{instance}: {}", answer.body);
        assert!(
            answer.body.contains(REJECT_BUSY) && answer.stream.is_none(),
            "{instance} refuses the third call: {}",
            answer.body
        );
    }
    // Once a call ends, its slot is free again for the fleet: B takes the next call.
    stream_a.stop().await;
    wait_for_call(
        &fleet.a.address,
        &on_a.call_sid,
        Duration::from_secs(15),
        "the first call's end",
        |call| call["end_reason"].is_string(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, next) = incoming_at(&fleet.b.address).await;
        if next.stream.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot is never given out: {}",
            next.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn sigkill_of_the_instance_holding_a_call_leaves_it_failed_instance_lost_with_its_turns_and_new_calls_work()
 {
    // Arrange: a call on B whose caller turn is stored, the assistant still speaking.
    let mut fleet = Fleet::start(
        Script {
            responses: vec![ScriptedResponse::speak(30_000, "A long answer.")],
            caller_transcripts: vec!["Hi, I'd like to book a table.".into()],
            speed_up: 1.0,
            ..Script::default()
        },
        &[],
    )
    .await;
    let (webhook, stream) = call_via(&fleet.b.address, &fleet.b.address).await;
    stream.send_audio(&CALLER_HELLO);
    expect_assistant_audio(&stream, "the answer plays").await;
    let stored = wait_for_call(
        &fleet.a.address,
        &webhook.call_sid,
        Duration::from_secs(15),
        "the caller's turn, stored mid-call",
        |call| call["transcript"].as_array().is_some_and(|t| !t.is_empty()),
    )
    .await;
    assert_eq!(stored["status"], "in-progress", "{stored}");

    // Act: SIGKILL B: no drain, no final write.
    fleet.b.child.start_kill().expect("SIGKILL is sent");
    let _ = fleet.b.child.wait().await;

    // Assert: A closes B's call once B's lease has run out, keeping its turns.
    let lost = wait_for_call(
        &fleet.a.address,
        &webhook.call_sid,
        Duration::from_secs(LEASE_S * 10 + 10),
        "the lost call closed by A",
        |call| call["status"] != "in-progress",
    )
    .await;
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["end_reason"], "instance_lost", "{lost}");
    assert_eq!(lost["transcript"], stored["transcript"], "{lost}");
    assert!(lost["ended_at"].is_string(), "{lost}");
    // New calls through the balancer keep working, on A.
    let (next, next_stream) = call_via(&fleet.lb.address, &fleet.lb.address).await;
    next_stream.send_audio(&CALLER_HELLO);
    expect_assistant_audio(&next_stream, "a new call after the kill").await;
    assert!(holds(&fleet.a, &next.call_sid), "A relays the new call");
}

#[actix_web::test]
async fn sigterm_of_one_instance_drains_its_calls_while_the_other_takes_new_ones() {
    // Arrange: a call on B, a long answer playing; B drains for 5 s.
    let mut fleet = Fleet::start(
        Script {
            responses: vec![
                ScriptedResponse::speak(30_000, "Once upon a time there was a long story."),
                ScriptedResponse::speak(800, "Sorry, I have to end the call now. Goodbye!"),
            ],
            speed_up: 2.0,
            ..Script::default()
        },
        &[("CALLBRIDGE_DRAIN_TIMEOUT_S", "5")],
    )
    .await;
    let (draining, draining_stream) = call_via(&fleet.b.address, &fleet.b.address).await;
    draining_stream.send_audio(&CALLER_HELLO);
    expect_assistant_audio(&draining_stream, "B's call").await;

    // Act: SIGTERM B; HAProxy sees /ready turn 503 and stops sending it requests.
    fleet.b.sigterm().await;
    let b_down = fleet
        .lb
        .wait_for_servers(Duration::from_secs(10), |a, b| {
            a.status == "UP" && b.status.starts_with("DOWN")
        })
        .await;
    assert!(b_down, "haproxy takes B out: {:?}", fleet.lb.stats().await);
    let mut new_calls = Vec::new();
    for _ in 0..3 {
        let (webhook, stream) = call_via(&fleet.lb.address, &fleet.lb.address).await;
        stream.send_audio(&CALLER_HELLO);
        new_calls.push((webhook, stream));
    }

    // Assert: A takes every new call while B's call goes on.
    for (webhook, stream) in &new_calls {
        expect_assistant_audio(stream, "a call placed while B drains").await;
        assert!(
            holds(&fleet.a, &webhook.call_sid),
            "A relays {}",
            webhook.call_sid
        );
    }
    assert!(
        !draining_stream
            .events()
            .iter()
            .any(|e| matches!(e.kind, Observation::Closed { .. })),
        "B's call is still up while A takes the new ones"
    );
    // B's call ends with the drain (goodbye, then hang-up), stored as such, and B exits cleanly.
    server_closed(&draining_stream, Duration::from_secs(20))
        .await
        .expect("B ends its call after the drain timeout");
    let ended = wait_for_call(
        &fleet.a.address,
        &draining.call_sid,
        Duration::from_secs(10),
        "B's drained call",
        |call| call["end_reason"].is_string(),
    )
    .await;
    assert_eq!(ended["end_reason"], "shutdown", "{ended}");
    let (status, logs) = fleet.b.wait_with_logs().await;
    assert!(status.success(), "B exits 0: {status:?}\n{logs}");
}

#[actix_web::test]
async fn restarting_one_instance_leaves_the_calls_live_on_the_other_in_progress() {
    // Arrange: a call on A, the caller heard.
    let mut fleet = Fleet::start(Script::default(), &[]).await;
    let (webhook, stream) = call_via(&fleet.a.address, &fleet.a.address).await;
    stream.send_audio(&CALLER_HELLO);
    expect_assistant_audio(&stream, "A's call").await;

    // Act: a rolling restart of B (SIGTERM, then a new process with the same settings).
    fleet.restart_b().await;

    // Assert: A's call is still in progress for the new B and for A, and still relays: it ends as the caller hangs up.
    let on_new_b = call_of(&fleet.b.address, &webhook.call_sid)
        .await
        .expect("the new B reads A's call");
    assert_eq!(on_new_b["status"], "in-progress", "{on_new_b}");
    assert!(on_new_b["end_reason"].is_null(), "{on_new_b}");
    assert!(
        !stream
            .events()
            .iter()
            .any(|e| matches!(e.kind, Observation::Closed { .. })),
        "A's call is still up"
    );
    stream.stop().await;
    let ended = wait_for_call(
        &fleet.a.address,
        &webhook.call_sid,
        Duration::from_secs(15),
        "A's call ended by its caller",
        |call| call["end_reason"].is_string(),
    )
    .await;
    assert_eq!(ended["end_reason"], "caller_hung_up", "{ended}");
}
