//! The webhook outbox in the call store, driven with explicit times (the delivery task's clock): which writes queue
//! which events, in the same transaction as the change; `call.completed` once, with the record `get_call` returns;
//! the retry schedule, 410 Gone, manual retries; pending deliveries surviving a reopened database. Each test runs on
//! SQLite (`name::sqlite`) and on PostgreSQL (`name::postgres`, a fresh schema of `CALLBRIDGE_TEST_DATABASE_URL`).

use std::path::PathBuf;
use std::time::Duration;

use callbridge::calls::model::{CallStatus, CallView, NewCall};
use callbridge::calls::store::{AttemptOutcome, CallStore, DeliveryStatus, StoreError};
use callbridge::calls::{CallRecord, Direction, EndReason, Speaker};
use callbridge::twilio::amd::AnsweredBy;
use callbridge::webhooks::schedule::RetrySchedule;
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

const HOOK: &str = "https://hooks.example.com/callbridge";
const T0: OffsetDateTime = datetime!(2030-01-02 03:04:05 UTC);

fn at(seconds: f64) -> OffsetDateTime {
    T0 + time::Duration::seconds_f64(seconds)
}

fn outbound(webhook_url: Option<&str>) -> NewCall {
    NewCall {
        direction: Direction::OutboundApi,
        from: "+14155550100".into(),
        to: "+14155552671".into(),
        call_sid: None,
        instructions: Some("Book a table for 4.".into()),
        greeting: None,
        voice: None,
        language: None,
        max_duration_s: Some(300),
        metadata: None,
        answering: Default::default(),
        webhook_url: webhook_url.map(str::to_owned),
        record: false,
        outcome_schema: None,
        mcp_servers: None,
        mode: Default::default(),
        max_cost_usd: None,
        engine: None,
    }
}

/// A store for one test: SQLite in memory, or PostgreSQL in a fresh schema dropped at the end.
struct TestStore {
    /// The store.
    store: CallStore,
    /// Its PostgreSQL schema, if any.
    _schema: Option<crate::pg_store::Schema>,
}

impl TestStore {
    fn sqlite() -> TestStore {
        TestStore {
            store: CallStore::open_in_memory().expect("opens"),
            _schema: None,
        }
    }

    fn postgres() -> TestStore {
        let schema = crate::pg_store::Schema::create();
        TestStore {
            store: CallStore::open_url(&schema.url()).expect("opens"),
            _schema: Some(schema),
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = CallStore;

    fn deref(&self) -> &CallStore {
        &self.store
    }
}

/// `both_backends! { fn name(store) { ... } }`: the test `name::sqlite` and `name::postgres`.
macro_rules! both_backends {
    (fn $name:ident($store:ident) $body:block) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let $store = TestStore::sqlite();
                $body
            }

            #[test]
            fn postgres() {
                let $store = TestStore::postgres();
                $body
            }
        }
    };
}

/// The bodies of every pending delivery due by `now`, parsed, the longest due first. Read from the list, not with
/// `due_webhooks`, which on PostgreSQL claims what it returns (one per call).
fn due_bodies(store: &CallStore, now: OffsetDateTime) -> Vec<Value> {
    let mut due: Vec<_> = store
        .list_webhooks(Some(DeliveryStatus::Pending), 100)
        .expect("read")
        .into_iter()
        .rev()
        .filter(|d| d.next_attempt_at.is_some_and(|next| next <= now))
        .collect();
    due.sort_by_key(|d| d.next_attempt_at);
    due.iter()
        .map(|d| {
            let body = store.webhook_body(&d.id).expect("read").expect("a body");
            serde_json::from_str(&body).expect("a JSON body")
        })
        .collect()
}

/// Stores a new outbound call that names `HOOK` as its webhook URL.
fn hooked_call(store: &CallStore) -> CallView {
    store.create(&outbound(Some(HOOK))).expect("stored")
}

/// Moves call `id` to `status` at `at(seconds)`; the store accepts it (or ignores it, without an error).
fn update_status(store: &CallStore, id: &str, status: CallStatus, seconds: f64) {
    store
        .update_status(id, status, at(seconds))
        .expect("updated");
}

/// The `call.completed` events among `bodies`.
fn completed_bodies(bodies: &[Value]) -> Vec<&Value> {
    bodies
        .iter()
        .filter(|b| b["type"] == "call.completed")
        .collect()
}

fn types(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn finished_record(call_sid: &str) -> CallRecord {
    let mut record = CallRecord::new(
        call_sid.into(),
        Direction::OutboundApi,
        "+14155550100".into(),
        "+14155552671".into(),
    );
    record.push_turn(Speaker::Caller, "Hello, Luigi's.", 400, false, None);
    record.push_turn(
        Speaker::Assistant,
        "Hi, a table for four tonight?",
        1_500,
        false,
        Some("item_1"),
    );
    record.outcome = Some("Booked for 7:30".into());
    record.finish(EndReason::Goodbye, 42_000);
    record
}

both_backends! {
    fn a_call_without_a_webhook_url_queues_nothing(store) {
        let call = store.create(&outbound(None)).expect("stored");

        update_status(&store, &call.id, CallStatus::Ringing, 1.0);
        update_status(&store, &call.id, CallStatus::Busy, 5.0);

        assert!(due_bodies(&store, at(60.0)).is_empty());
        assert!(store.list_webhooks(None, 10).expect("read").is_empty());
    }
}

both_backends! {
    fn each_accepted_status_change_queues_one_status_changed_event_and_a_late_one_none(store) {
        let call = hooked_call(&store);
        store.set_call_sid(&call.id, "CA1").expect("stored");

        update_status(&store, &call.id, CallStatus::Ringing, 1.0);
        update_status(&store, &call.id, CallStatus::InProgress, 3.0);
        store
            .update_status(&call.id, CallStatus::Ringing, at(2.0))
            .expect("a late ringing is ignored");

        let bodies = due_bodies(&store, at(10.0));
        assert_eq!(
            types(&bodies),
            ["call.status_changed", "call.status_changed"]
        );
        assert_eq!(bodies[0]["data"]["status"], "ringing");
        assert_eq!(bodies[0]["data"]["previous_status"], "queued");
        assert_eq!(bodies[0]["data"]["call_sid"], "CA1");
        assert_eq!(bodies[1]["data"]["status"], "in-progress");
        assert_eq!(bodies[1]["data"]["call_id"], call.id.as_str());
        assert_eq!(bodies[1]["timestamp"], "2030-01-02T03:04:08Z");
        let deliveries = store.list_webhooks(None, 10).expect("read");
        assert!(deliveries.iter().all(|d| d.url == HOOK));
    }
}

both_backends! {
    fn an_answered_call_sends_call_completed_only_once_its_record_is_written_with_get_calls_json(store) {
        let call = hooked_call(&store);
        store.set_call_sid(&call.id, "CA2").expect("stored");
        update_status(&store, &call.id, CallStatus::InProgress, 1.0);

        update_status(&store, &call.id, CallStatus::Completed, 44.0);
        let before_record = types(&due_bodies(&store, at(60.0)));
        store
            .finish(&call.id, &finished_record("CA2"))
            .expect("the record");
        let bodies = due_bodies(&store, at(60.0));
        let view = store.get(&call.id).expect("read").expect("present");

        assert!(
            !before_record.contains(&"call.completed".to_owned()),
            "{before_record:?}"
        );
        let completed = completed_bodies(&bodies);
        assert_eq!(completed.len(), 1);
        assert_eq!(
            completed[0]["data"],
            serde_json::to_value(&view).expect("JSON")
        );
        assert_eq!(completed[0]["data"]["outcome"], "Booked for 7:30");
        assert_eq!(completed[0]["data"]["end_reason"], "goodbye");
        assert_eq!(
            completed[0]["data"]["transcript"][1]["text"],
            "Hi, a table for four tonight?"
        );
    }
}

both_backends! {
    fn a_record_written_before_twilios_completed_sends_call_completed_with_the_terminal_status(store) {
        let call = hooked_call(&store);
        update_status(&store, &call.id, CallStatus::InProgress, 1.0);
        store
            .finish(&call.id, &finished_record("CA3"))
            .expect("the record");
        let before_status = types(&due_bodies(&store, at(60.0)));

        update_status(&store, &call.id, CallStatus::Completed, 45.0);
        store
            .finish(&call.id, &finished_record("CA3"))
            .expect("the record written again");

        let bodies = due_bodies(&store, at(60.0));
        let completed = completed_bodies(&bodies);
        assert!(!before_status.contains(&"call.completed".to_owned()));
        assert_eq!(completed.len(), 1, "once per call");
        assert_eq!(completed[0]["data"]["status"], "completed");
    }
}

both_backends! {
    fn an_unanswered_call_sends_call_completed_with_its_status_at_once(store) {
        let call = hooked_call(&store);

        update_status(&store, &call.id, CallStatus::NoAnswer, 30.0);

        let bodies = due_bodies(&store, at(30.0));
        assert_eq!(types(&bodies), ["call.status_changed", "call.completed"]);
        assert_eq!(bodies[1]["data"]["status"], "no-answer");
        assert_eq!(bodies[1]["data"]["transcript"], serde_json::json!([]));
    }
}

both_backends! {
    fn the_first_answering_machine_verdict_queues_call_answered_by_and_a_second_does_not(store) {
        let call = hooked_call(&store);

        store
            .set_answered_by(&call.id, AnsweredBy::MachineEndBeep)
            .expect("stored");
        store
            .set_answered_by(&call.id, AnsweredBy::Human)
            .expect("ignored");

        let bodies = due_bodies(&store, OffsetDateTime::now_utc());
        assert_eq!(types(&bodies), ["call.answered_by"]);
        assert_eq!(bodies[0]["data"]["answered_by"], "machine_end_beep");
    }
}

/// A store with one pending `call.status_changed` queued at `at(0)`; returns its id.
fn one_pending(store: &CallStore) -> String {
    let call = hooked_call(store);
    update_status(store, &call.id, CallStatus::Ringing, 0.0);
    store.list_webhooks(None, 1).expect("read")[0].id.clone()
}

fn failed(code: u16) -> AttemptOutcome {
    AttemptOutcome::Failed {
        status_code: Some(code),
        error: format!("the receiver answered {code}"),
    }
}

both_backends! {
    fn a_failed_attempt_is_due_again_after_the_schedules_delay_and_failed_after_the_last(store) {
        let id = one_pending(&store);
        let schedule = RetrySchedule {
            base: Duration::from_secs(5),
            max_attempts: 3,
        };

        let first = store
            .record_webhook_attempt(&id, &failed(500), at(0.0), schedule)
            .expect("recorded");
        let early = store.due_webhooks(at(4.9), 10).expect("read");
        let on_time = store.due_webhooks(at(5.0), 10).expect("read");
        let second = store
            .record_webhook_attempt(&id, &failed(503), at(5.0), schedule)
            .expect("recorded");
        let next_due = store.next_webhook_due().expect("read");
        let third = store
            .record_webhook_attempt(&id, &failed(500), at(30.0), schedule)
            .expect("recorded");
        let delivery = store.get_webhook(&id).expect("read").expect("present");

        assert_eq!(first, Some(DeliveryStatus::Pending));
        assert!(early.is_empty(), "not before its time");
        assert_eq!(on_time.len(), 1);
        assert_eq!(second, Some(DeliveryStatus::Pending));
        assert_eq!(next_due, Some(at(30.0)), "5 s × 5 after the second attempt");
        assert_eq!(third, Some(DeliveryStatus::Failed));
        assert_eq!(delivery.attempts, 3);
        assert_eq!(delivery.last_status_code, Some(500));
        assert_eq!(delivery.next_attempt_at, None);
        assert!(
            store
                .due_webhooks(at(99_999.0), 10)
                .expect("read")
                .is_empty()
        );
        assert_eq!(
            store
                .list_webhooks(Some(DeliveryStatus::Failed), 10)
                .expect("read")
                .len(),
            1
        );
    }
}

both_backends! {
    fn a_410_gone_fails_the_delivery_at_once_and_a_2xx_delivers_it(store) {
        let gone = one_pending(&store);
        let ok = one_pending(&store);

        let gone_status = store
            .record_webhook_attempt(&gone, &failed(410), at(0.0), RetrySchedule::default())
            .expect("recorded");
        let ok_status = store
            .record_webhook_attempt(
                &ok,
                &AttemptOutcome::Delivered { status_code: 204 },
                at(0.5),
                RetrySchedule::default(),
            )
            .expect("recorded");
        let delivered = store.get_webhook(&ok).expect("read").expect("present");

        assert_eq!(gone_status, Some(DeliveryStatus::Failed));
        assert_eq!(ok_status, Some(DeliveryStatus::Delivered));
        assert_eq!(delivered.delivered_at, Some(at(0.5)));
        assert_eq!(delivered.last_status_code, Some(204));
        assert_eq!(
            store
                .record_webhook_attempt(&ok, &failed(500), at(1.0), RetrySchedule::default())
                .expect("read"),
            None,
            "a delivered one is not attempted again"
        );
    }
}

both_backends! {
    fn a_retry_makes_a_failed_delivery_pending_and_due_now_and_an_unknown_id_is_not_found(store) {
        let id = one_pending(&store);
        let schedule = RetrySchedule {
            base: Duration::from_secs(5),
            max_attempts: 1,
        };
        store
            .record_webhook_attempt(&id, &failed(500), at(0.0), schedule)
            .expect("failed at once");

        let retried = store.retry_webhook(&id, at(100.0)).expect("retried");
        let due = store.due_webhooks(at(100.0), 10).expect("read");
        let unknown = store.retry_webhook("msg_unknown", at(100.0));

        assert_eq!(retried.status, DeliveryStatus::Pending);
        assert_eq!(retried.next_attempt_at, Some(at(100.0)));
        assert_eq!(due.len(), 1);
        assert!(
            matches!(unknown, Err(StoreError::NotFound(_))),
            "{unknown:?}"
        );
    }
}

both_backends! {
    fn an_answered_call_whose_record_never_came_gets_call_completed_after_the_grace(store) {
        let call = hooked_call(&store);
        update_status(&store, &call.id, CallStatus::InProgress, 1.0);
        update_status(&store, &call.id, CallStatus::Completed, 20.0);

        let too_soon = store.queue_overdue_completions(at(19.0)).expect("swept");
        let after = store.queue_overdue_completions(at(200.0)).expect("swept");
        let again = store.queue_overdue_completions(at(300.0)).expect("swept");

        assert_eq!((too_soon, after, again), (0, 1, 0));
        let bodies = due_bodies(&store, at(300.0));
        assert_eq!(
            types(&bodies).last().map(String::as_str),
            Some("call.completed")
        );
    }
}

/// A data directory of its own, removed when dropped.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pending_deliveries_and_their_exact_bodies_survive_reopening_the_database() {
    let dir = DataDir(std::env::temp_dir().join(format!(
        "callbridge-outbox-{}-{}",
        std::process::id(),
        rand_suffix()
    )));
    let path = dir.0.join("callbridge.db");
    let (id, body) = {
        let store = CallStore::open(&path).expect("opens");
        let id = one_pending(&store);
        store
            .record_webhook_attempt(&id, &failed(500), at(0.0), RetrySchedule::default())
            .expect("recorded");
        let body = store.webhook_body(&id).expect("read").expect("present");
        (id, body)
    };

    let reopened = CallStore::open(&path).expect("opens again");
    let due = reopened.due_webhooks(at(5.0), 10).expect("read");

    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    assert_eq!(due[0].body, body);
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
