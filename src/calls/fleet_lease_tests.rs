//! Two instances of a fleet on a real redis-server (`CALLBRIDGE_TEST_REDIS_URL`): the call service's fleet-wide
//! admission (cap and daily budget counted once for both) and the reaper closing a lost instance's calls.

use std::sync::Arc;

use crate::calls::live::LiveCalls;
use crate::calls::model::{CallStatus, NewCall};
use crate::calls::service::{CallService, OutboundSettings, ServiceError};
use crate::calls::store::CallStore;
use crate::calls::{Direction, Speaker, Turn};
use crate::fleet::Fleet;
use crate::fleet::tests::{fleet, random_prefix, settings};
use crate::security::policy::DestinationPolicy;
use crate::twilio::amd::{AmdTuning, MachinePolicy};

/// A call service with an in-memory store, joined to the fleet `fleet`, with a cap and an outbound budget.
fn service_in(fleet: Fleet, max_concurrent_calls: u32, daily_outbound_budget: u32) -> CallService {
    service_on(
        CallStore::open_in_memory().expect("an in-memory database opens"),
        fleet,
        max_concurrent_calls,
        daily_outbound_budget,
    )
}

fn service_on(
    store: CallStore,
    fleet: Fleet,
    max_concurrent_calls: u32,
    daily_outbound_budget: u32,
) -> CallService {
    let service = CallService::new(
        store,
        None,
        LiveCalls::default(),
        OutboundSettings {
            public_url: None,
            from_number: None,
            max_call_duration_s: 60,
            ring_timeout_s: 30,
            destinations: DestinationPolicy::new(vec!["+1".into()], Vec::new()),
            daily_outbound_budget,
            max_concurrent_calls,
            answering_machine: MachinePolicy::Ignore,
            amd_tuning: AmdTuning::default(),
            record: false,
            webhooks: Default::default(),
            voice_mcp_servers: Default::default(),
            daily_cost_budget_usd: None,
        },
        Arc::new(|| 0),
    );
    service.join_fleet(fleet);
    service
}

fn inbound(call_sid: &str) -> NewCall {
    NewCall {
        engine: None,
        direction: Direction::Inbound,
        from: "+14155550100".into(),
        to: "+14155552671".into(),
        call_sid: Some(call_sid.into()),
        instructions: None,
        greeting: None,
        voice: None,
        language: None,
        max_duration_s: None,
        metadata: None,
        answering: Default::default(),
        record: false,
        webhook_url: None,
        outcome_schema: None,
        mcp_servers: None,
        mode: Default::default(),
        max_cost_usd: None,
    }
}

/// An inbound call from Twilio's `call_sid`, stored and moved to `status` now.
fn inbound_at(
    store: &CallStore,
    call_sid: &str,
    status: CallStatus,
) -> crate::calls::model::CallView {
    let call = store.create(&inbound(call_sid)).expect("stored");
    store
        .update_status(&call.id, status, time::OffsetDateTime::now_utc())
        .expect("status stored");
    call
}

#[tokio::test]
async fn two_instances_with_a_cap_of_two_refuse_the_third_call_whichever_gets_it() {
    let prefix = random_prefix();
    let a = service_in(fleet(&prefix, "node-a").await, 2, 10);
    let b = service_in(fleet(&prefix, "node-b").await, 2, 10);

    let first = a.admit_in_fleet("CA01", false).await;
    let second = b.admit_in_fleet("CA02", false).await;
    let third_on_a = a.admit_in_fleet("CA03", false).await;
    let third_on_b = b.admit_in_fleet("CA03", false).await;

    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    assert!(
        matches!(third_on_a, Err(ServiceError::TooManyCalls { max: 2 })),
        "{third_on_a:?}"
    );
    assert!(
        matches!(third_on_b, Err(ServiceError::TooManyCalls { max: 2 })),
        "{third_on_b:?}"
    );
}

#[tokio::test]
async fn a_slot_freed_on_one_instance_admits_a_call_on_the_other() {
    let prefix = random_prefix();
    let a = service_in(fleet(&prefix, "node-a").await, 2, 10);
    let b = service_in(fleet(&prefix, "node-b").await, 2, 10);
    a.admit_in_fleet("CA01", false).await.expect("admitted");
    b.admit_in_fleet("CA02", false).await.expect("admitted");

    a.release_fleet_slots(&["CA01"]).await;
    let after = b.admit_in_fleet("CA03", false).await;

    assert!(after.is_ok(), "{after:?}");
}

#[tokio::test]
async fn a_replayed_webhook_keeps_its_slot_and_takes_no_second_one() {
    let prefix = random_prefix();
    let a = service_in(fleet(&prefix, "node-a").await, 2, 10);
    let b = service_in(fleet(&prefix, "node-b").await, 2, 10);
    a.admit_in_fleet("CA01", false).await.expect("admitted");

    let replay = b.admit_in_fleet("CA01", false).await;
    let other = a.admit_in_fleet("CA02", false).await;

    assert!(replay.is_ok(), "{replay:?}");
    assert!(other.is_ok(), "the replay took no second slot: {other:?}");
    let calls = a
        .fleet()
        .expect("in a fleet")
        .calls_in_progress()
        .await
        .expect("counted");
    assert_eq!(calls, 2);
}

#[tokio::test]
async fn the_daily_outbound_budget_is_counted_across_both_instances() {
    let prefix = random_prefix();
    let a = service_in(fleet(&prefix, "node-a").await, 10, 3);
    let b = service_in(fleet(&prefix, "node-b").await, 10, 3);

    let placed = [
        a.admit_in_fleet("call-1", true).await,
        b.admit_in_fleet("call-2", true).await,
        a.admit_in_fleet("call-3", true).await,
    ];
    let fourth_on_b = b.admit_in_fleet("call-4", true).await;
    let fourth_on_a = a.admit_in_fleet("call-4", true).await;

    assert!(placed.iter().all(Result::is_ok), "{placed:?}");
    assert!(
        matches!(
            fourth_on_b,
            Err(ServiceError::DailyBudgetExhausted { budget: 3 })
        ),
        "{fourth_on_b:?}"
    );
    assert!(
        matches!(
            fourth_on_a,
            Err(ServiceError::DailyBudgetExhausted { budget: 3 })
        ),
        "{fourth_on_a:?}"
    );
    let calls = a
        .fleet()
        .expect("in a fleet")
        .calls_in_progress()
        .await
        .expect("counted");
    assert_eq!(calls, 3, "a budget refusal takes no slot");
}

#[tokio::test]
async fn the_budget_never_counts_fewer_calls_than_the_instances_store_has() {
    let prefix = random_prefix();
    let a = service_in(fleet(&prefix, "node-a").await, 10, 2);
    let mut outbound = inbound("CA09");
    outbound.direction = crate::calls::Direction::OutboundApi;
    outbound.call_sid = None;
    a.store().create(&outbound).expect("stored");
    a.store().create(&outbound).expect("stored");

    let refused = a.admit_in_fleet("call-3", true).await;

    assert!(
        matches!(
            refused,
            Err(ServiceError::DailyBudgetExhausted { budget: 2 })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_redis_that_cannot_be_asked_refuses_the_call_as_unavailable() {
    let prefix = random_prefix();
    let fleet = fleet(&prefix, "node-a").await;
    let service = service_in(fleet.clone(), 2, 10);
    // A script error stands in for a Redis failure: a key of the wrong type where the slots live.
    let mut redis = fleet.connection();
    let () = redis::cmd("SET")
        .arg(fleet.key("slots"))
        .arg("not a sorted set")
        .query_async(&mut redis)
        .await
        .expect("SET");

    let refused = service.admit_in_fleet("CA01", false).await;

    assert!(
        matches!(refused, Err(ServiceError::FleetUnavailable(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_calls_of_an_instance_whose_lease_expired_are_marked_failed_instance_lost_with_their_turns_kept()
 {
    let prefix = random_prefix();
    // One call store for both, as with a shared PostgreSQL: the survivor closes the dead instance's calls in it.
    let store = CallStore::open_in_memory().expect("an in-memory database opens");
    let dead = Fleet::connect(&settings(&prefix, "node-dead", 3))
        .await
        .expect("reachable")
        .expect("set");
    let survivor_fleet = fleet(&prefix, "node-b").await;
    let survivor = service_on(store.clone(), survivor_fleet.clone(), 10, 10);
    let call = inbound_at(
        &store,
        "CA0123456789abcdef0123456789abcdef",
        CallStatus::InProgress,
    );
    let turn = Turn {
        speaker: Speaker::Caller,
        text: "Hello, is anyone there?".into(),
        at: time::OffsetDateTime::now_utc(),
        offset_ms: 1_200,
        interrupted: false,
        item_id: None,
    };
    store.append_turn(&call.id, &turn).expect("turn stored");
    let ended = inbound_at(
        &store,
        "CAffffffffffffffffffffffffffffffff",
        CallStatus::Completed,
    );
    dead.heartbeat().await.expect("lease taken");
    dead.admit(&crate::fleet::admission::SlotRequest {
        call_id: "CA0123456789abcdef0123456789abcdef",
        max_calls: 10,
        slot_ttl: std::time::Duration::from_secs(60),
        budget: None,
    })
    .await
    .expect("slot");
    dead.register_call("CA0123456789abcdef0123456789abcdef", &call.id)
        .await
        .expect("held");
    dead.register_call("CAffffffffffffffffffffffffffffffff", &ended.id)
        .await
        .expect("held");

    let while_alive = crate::calls::fleet_lease::reap_lost(&survivor, &survivor_fleet).await;
    // The dead instance renews nothing from here on: its 3 s lease runs out.
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let closed = crate::calls::fleet_lease::reap_lost(&survivor, &survivor_fleet).await;

    assert_eq!(while_alive, 0, "a live instance's calls are left alone");
    assert_eq!(closed, 1, "only the call still open is closed");
    let lost = store.get(&call.id).expect("read").expect("found");
    assert_eq!(lost.status, CallStatus::Failed);
    assert_eq!(lost.end_reason.as_deref(), Some("instance_lost"));
    assert_eq!(lost.transcript, vec![turn], "its stored turns are kept");
    let untouched = store.get(&ended.id).expect("read").expect("found");
    assert_eq!(untouched.status, CallStatus::Completed);
    assert_eq!(untouched.end_reason, None);
    let holder = survivor_fleet
        .instance_of("CA0123456789abcdef0123456789abcdef")
        .await
        .expect("looked up");
    assert_eq!(holder, None, "its registry entry is freed");
    let slots = survivor_fleet.calls_in_progress().await.expect("counted");
    assert_eq!(slots, 0, "its slot is freed");
    let mut redis = survivor_fleet.connection();
    let instances: Vec<String> = redis::cmd("SMEMBERS")
        .arg(survivor_fleet.key("instances"))
        .query_async(&mut redis)
        .await
        .expect("SMEMBERS");
    assert!(
        !instances.contains(&"node-dead".to_owned()),
        "{instances:?}"
    );
}

#[tokio::test]
async fn a_lost_instance_is_claimed_by_one_survivor_only() {
    let prefix = random_prefix();
    let dead = fleet(&prefix, "node-dead").await;
    let b = fleet(&prefix, "node-b").await;
    let c = fleet(&prefix, "node-c").await;
    dead.heartbeat().await.expect("lease taken");
    dead.register_call("CA01", "call-1").await.expect("held");
    let mut redis = dead.connection();
    // The lease key gone is what an expired lease looks like.
    let () = redis::cmd("DEL")
        .arg(dead.key("instance:node-dead"))
        .query_async(&mut redis)
        .await
        .expect("DEL");

    let (by_b, by_c) = tokio::join!(b.claim_lost(), c.claim_lost());

    let claims: Vec<_> = [by_b.expect("asked"), by_c.expect("asked")]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(claims[0].instance_id, "node-dead");
    assert_eq!(
        claims[0].calls.get("call-1").map(String::as_str),
        Some("CA01")
    );
}

#[tokio::test]
async fn an_instance_that_leaves_is_no_longer_listed_and_holds_nothing() {
    let prefix = random_prefix();
    let a = fleet(&prefix, "node-a").await;
    a.heartbeat().await.expect("lease taken");
    a.register_call("CA01", "call-1").await.expect("held");

    a.leave().await.expect("left");

    let mut redis = a.connection();
    let lease: bool = redis::cmd("EXISTS")
        .arg(a.key("instance:node-a"))
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    let listed: bool = redis::cmd("SISMEMBER")
        .arg(a.key("instances"))
        .arg("node-a")
        .query_async(&mut redis)
        .await
        .expect("SISMEMBER");
    assert!(!lease && !listed);
    assert_eq!(a.instance_of("CA01").await.expect("looked up"), None);
}

#[tokio::test]
async fn the_heartbeat_renews_the_lease_and_the_held_calls() {
    let prefix = random_prefix();
    let a = Fleet::connect(&settings(&prefix, "node-a", 3))
        .await
        .expect("reachable")
        .expect("set");
    a.register_call("CA01", "call-1").await.expect("held");

    let held = a.heartbeat().await.expect("renewed");

    assert_eq!(held, 1);
    let mut redis = a.connection();
    let lease_ms: i64 = redis::cmd("PTTL")
        .arg(a.key("instance:node-a"))
        .query_async(&mut redis)
        .await
        .expect("PTTL");
    let entry_ms: i64 = redis::cmd("PTTL")
        .arg(a.key("call:CA01"))
        .query_async(&mut redis)
        .await
        .expect("PTTL");
    assert!(lease_ms > 0 && lease_ms <= 3_000, "{lease_ms}");
    assert!(entry_ms > 3_000 && entry_ms <= 6_000, "{entry_ms}");
}

#[tokio::test]
async fn a_restarted_instance_closes_the_calls_its_earlier_run_left_held() {
    let prefix = random_prefix();
    let store = CallStore::open_in_memory().expect("an in-memory database opens");
    let earlier = fleet(&prefix, "node-a").await;
    let call = inbound_at(
        &store,
        "CA0123456789abcdef0123456789abcdef",
        CallStatus::InProgress,
    );
    earlier
        .register_call("CA0123456789abcdef0123456789abcdef", &call.id)
        .await
        .expect("held");
    let restarted = fleet(&prefix, "node-a").await;
    let service = service_on(store.clone(), restarted.clone(), 10, 10);

    crate::calls::fleet_lease::reap_previous_run(&service, &restarted).await;

    let closed = store.get(&call.id).expect("read").expect("found");
    assert_eq!(closed.status, CallStatus::Failed);
    assert_eq!(closed.end_reason.as_deref(), Some("instance_lost"));
    assert!(
        restarted
            .held_calls("node-a")
            .await
            .expect("read")
            .is_empty()
    );
}
