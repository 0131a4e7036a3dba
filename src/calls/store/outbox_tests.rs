//! Tests of the webhook outbox in the store, on SQLite and on PostgreSQL: what a status change, a verdict and a
//! call's end queue, due times, attempts and their retries, the sweep of overdue `call.completed`; and, on
//! PostgreSQL, two instances sharing one database claiming each due delivery once.

use std::collections::HashSet;
use std::time::Duration;

use time::macros::datetime;

use super::*;
use crate::calls::Direction;
use crate::calls::model::NewCall;
use crate::calls::store::test_db::{TestStore, both_backends};

const HOOK: &str = "https://hooks.example.com/callbridge";
const T0: OffsetDateTime = datetime!(2026-01-15 10:00 UTC);

/// Stores an outbound call, with the webhook URL when `hooked`, and returns its id.
fn call(store: &CallStore, hooked: bool) -> String {
    store
        .create(&NewCall {
            direction: Direction::OutboundApi,
            from: "+15550100".into(),
            to: "+15550199".into(),
            call_sid: None,
            instructions: None,
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: None,
            metadata: None,
            answering: Default::default(),
            record: false,
            webhook_url: hooked.then(|| HOOK.to_owned()),
            outcome_schema: None,
            mcp_servers: None,
            mode: Default::default(),
            max_cost_usd: None,
            engine: None,
        })
        .expect("stored")
        .id
}

/// Every delivery, oldest first, as `(call id, event)`.
fn events(store: &CallStore) -> Vec<(String, String)> {
    let mut all = store.list_webhooks(None, 100).expect("listed");
    all.reverse();
    all.into_iter().map(|d| (d.call_id, d.event)).collect()
}

fn schedule() -> RetrySchedule {
    RetrySchedule {
        base: Duration::from_secs(5),
        max_attempts: 3,
    }
}

both_backends! {
    fn a_status_change_of_a_call_with_a_webhook_url_queues_a_delivery_due_at_once(store) {
        let hooked = call(&store, true);
        let plain = call(&store, false);

        store.update_status(&hooked, CallStatus::Ringing, T0).expect("updated");
        store.update_status(&plain, CallStatus::Ringing, T0).expect("updated");

        let pending = store
            .list_webhooks(Some(DeliveryStatus::Pending), 10)
            .expect("listed");
        assert_eq!(pending.len(), 1, "nothing for the call without a URL");
        let delivery = &pending[0];
        assert_eq!(
            (delivery.call_id.as_str(), delivery.event.as_str(), delivery.url.as_str()),
            (hooked.as_str(), "call.status_changed", HOOK)
        );
        assert_eq!((delivery.attempts, delivery.next_attempt_at), (0, Some(T0)));
        let body: serde_json::Value = serde_json::from_str(
            &store.webhook_body(&delivery.id).expect("read").expect("there"),
        )
        .expect("JSON");
        assert_eq!(body["data"]["status"], "ringing");
        assert_eq!(body["data"]["previous_status"], "queued");
        assert_eq!(store.get_webhook(&delivery.id).expect("read").as_ref(), Some(delivery));
        assert_eq!(store.next_webhook_due().expect("read"), Some(T0));
    }
}

both_backends! {
    fn an_unanswered_call_that_ends_queues_call_completed_once(store) {
        let id = call(&store, true);

        store.update_status(&id, CallStatus::Busy, T0).expect("updated");
        store
            .update_status(&id, CallStatus::Completed, T0 + time::Duration::seconds(1))
            .expect("ignored");
        store.set_answered_by(&id, crate::twilio::amd::AnsweredBy::Human).expect("stored");

        assert_eq!(
            events(&store),
            [
                (id.clone(), "call.status_changed".to_owned()),
                (id.clone(), "call.completed".to_owned()),
                (id.clone(), "call.answered_by".to_owned()),
            ]
        );
    }
}

both_backends! {
    fn a_failed_attempt_is_due_again_after_the_delay_and_a_2xx_delivers_it(store) {
        let id = call(&store, true);
        store.update_status(&id, CallStatus::Ringing, T0).expect("updated");
        let delivery = store.list_webhooks(None, 1).expect("listed").remove(0);
        let failed = AttemptOutcome::Failed { status_code: Some(500), error: "HTTP 500".into() };

        let first = store
            .record_webhook_attempt(&delivery.id, &failed, T0, schedule())
            .expect("recorded");
        let after_first = store.get_webhook(&delivery.id).expect("read").expect("there");
        let second = store
            .record_webhook_attempt(
                &delivery.id,
                &AttemptOutcome::Delivered { status_code: 204 },
                T0 + time::Duration::seconds(5),
                schedule(),
            )
            .expect("recorded");
        let late = store
            .record_webhook_attempt(&delivery.id, &failed, T0, schedule())
            .expect("recorded");
        let delivered = store.get_webhook(&delivery.id).expect("read").expect("there");

        assert_eq!((first, second, late), (
            Some(DeliveryStatus::Pending),
            Some(DeliveryStatus::Delivered),
            None
        ));
        assert_eq!(after_first.next_attempt_at, Some(T0 + time::Duration::seconds(5)));
        assert_eq!(after_first.last_status_code, Some(500));
        assert_eq!(after_first.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(delivered.attempts, 2);
        assert_eq!(delivered.delivered_at, Some(T0 + time::Duration::seconds(5)));
        assert_eq!(delivered.next_attempt_at, None);
        assert_eq!(store.next_webhook_due().expect("read"), None);
    }
}

both_backends! {
    fn a_410_gone_fails_a_delivery_at_once_and_a_retry_makes_it_pending_again(store) {
        let id = call(&store, true);
        store.update_status(&id, CallStatus::Ringing, T0).expect("updated");
        let delivery = store.list_webhooks(None, 1).expect("listed").remove(0);
        let gone = AttemptOutcome::Failed { status_code: Some(410), error: "HTTP 410".into() };

        let status = store
            .record_webhook_attempt(&delivery.id, &gone, T0, schedule())
            .expect("recorded");
        let retried = store
            .retry_webhook(&delivery.id, T0 + time::Duration::minutes(1))
            .expect("retried");
        let unknown = store.retry_webhook("msg_unknown", T0);

        assert_eq!(status, Some(DeliveryStatus::Failed));
        assert_eq!(retried.status, DeliveryStatus::Pending);
        assert_eq!(retried.next_attempt_at, Some(T0 + time::Duration::minutes(1)));
        assert_eq!(retried.attempts, 1);
        assert!(matches!(unknown, Err(StoreError::NotFound(_))), "{unknown:?}");
        assert_eq!(
            store.list_webhooks(Some(DeliveryStatus::Failed), 10).expect("listed"),
            []
        );
    }
}

both_backends! {
    fn deliveries_are_due_at_their_time_the_longest_due_first(store) {
        let early = call(&store, true);
        let late = call(&store, true);
        store
            .update_status(&late, CallStatus::Ringing, T0 + time::Duration::seconds(1))
            .expect("updated");
        store.update_status(&early, CallStatus::Ringing, T0).expect("updated");

        let next = store.next_webhook_due().expect("read");
        let none = store
            .due_webhooks(T0 - time::Duration::seconds(1), 10)
            .expect("read");
        let due: Vec<String> = store
            .due_webhooks(T0 + time::Duration::seconds(1), 10)
            .expect("read")
            .into_iter()
            .map(|d| d.call_id)
            .collect();

        assert_eq!(next, Some(T0));
        assert!(none.is_empty());
        assert_eq!(due, [early, late]);
    }
}

both_backends! {
    fn an_answered_call_whose_record_never_came_gets_call_completed_from_the_sweep(store) {
        let id = call(&store, true);
        store.update_status(&id, CallStatus::InProgress, T0).expect("updated");
        let ended = T0 + time::Duration::seconds(30);
        store.update_status(&id, CallStatus::Completed, ended).expect("updated");
        let before_sweep = events(&store).len();

        let early = store.queue_overdue_completions(ended).expect("swept");
        let queued = store
            .queue_overdue_completions(ended + time::Duration::seconds(120))
            .expect("swept");
        let again = store
            .queue_overdue_completions(ended + time::Duration::seconds(240))
            .expect("swept");

        assert_eq!(before_sweep, 2, "two status changes, no call.completed yet");
        assert_eq!((early, queued, again), (0, 1, 0));
        assert_eq!(
            events(&store).last(),
            Some(&(id.clone(), "call.completed".to_owned()))
        );
    }
}

/// Two stores on one fresh PostgreSQL schema: two instances sharing a database.
fn two_instances() -> (TestStore, CallStore) {
    let a = TestStore::postgres();
    let b = a.reopen();
    (a, b)
}

#[test]
fn two_instances_claim_each_due_delivery_exactly_once() {
    let (a, b) = two_instances();
    let calls: Vec<String> = (0..12).map(|_| call(&a, true)).collect();
    for id in &calls {
        a.update_status(id, CallStatus::Ringing, T0)
            .expect("updated");
        a.update_status(id, CallStatus::InProgress, T0)
            .expect("updated");
    }
    let queued: HashSet<String> = a
        .list_webhooks(None, 100)
        .expect("listed")
        .into_iter()
        .map(|d| d.id)
        .collect();

    let sent: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = [&*a, &b]
            .into_iter()
            .map(|store| {
                scope.spawn(move || {
                    let mut sent = Vec::new();
                    loop {
                        let due = store.due_webhooks(T0, 3).expect("claimed");
                        for delivery in &due {
                            let delivered = AttemptOutcome::Delivered { status_code: 200 };
                            store
                                .record_webhook_attempt(&delivery.id, &delivered, T0, schedule())
                                .expect("recorded");
                        }
                        sent.extend(due.into_iter().map(|d| d.id));
                        let pending = store
                            .list_webhooks(Some(DeliveryStatus::Pending), 1)
                            .expect("listed");
                        if pending.is_empty() {
                            return sent;
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("no worker panicked"))
            .collect()
    });

    let unique: HashSet<String> = sent.iter().cloned().collect();
    assert_eq!(queued.len(), 24);
    assert_eq!(sent.len(), unique.len(), "a delivery was claimed twice");
    assert_eq!(unique, queued);
    assert!(
        a.list_webhooks(None, 100)
            .expect("listed")
            .iter()
            .all(|d| d.attempts == 1 && d.status == DeliveryStatus::Delivered)
    );
}

#[test]
fn a_claimed_delivery_is_due_for_another_instance_only_once_its_claim_expires() {
    let (a, b) = two_instances();
    let id = call(&a, true);
    a.update_status(&id, CallStatus::Ringing, T0)
        .expect("updated");
    let claim = crate::calls::store::pg::outbox::WEBHOOK_CLAIM;

    let claimed = a.due_webhooks(T0, 10).expect("claimed");
    let meanwhile = b
        .due_webhooks(T0 + time::Duration::seconds(1), 10)
        .expect("read");
    let next = b.next_webhook_due().expect("read");
    let after_expiry = b.due_webhooks(T0 + claim, 10).expect("claimed");

    assert_eq!(claimed.len(), 1);
    assert!(meanwhile.is_empty(), "{meanwhile:?}");
    assert_eq!(next, Some(T0 + claim), "due again when the claim expires");
    assert_eq!(after_expiry, claimed, "the instance that claimed it died");
}

#[test]
fn one_calls_deliveries_go_out_one_at_a_time_oldest_first_across_instances() {
    let (a, b) = two_instances();
    let id = call(&a, true);
    a.update_status(&id, CallStatus::Ringing, T0)
        .expect("updated");
    a.update_status(&id, CallStatus::InProgress, T0)
        .expect("updated");
    let ringing = a
        .list_webhooks(None, 10)
        .expect("listed")
        .pop()
        .expect("two");

    let first = a.due_webhooks(T0, 10).expect("claimed");
    let while_in_flight = b.due_webhooks(T0, 10).expect("read");
    a.record_webhook_attempt(
        &first[0].id,
        &AttemptOutcome::Delivered { status_code: 200 },
        T0,
        schedule(),
    )
    .expect("recorded");
    let second = b.due_webhooks(T0, 10).expect("claimed");

    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, ringing.id, "the oldest first");
    assert!(while_in_flight.is_empty(), "{while_in_flight:?}");
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].id, first[0].id);
}

#[test]
fn a_released_delivery_is_due_again_at_once_for_any_instance() {
    let (a, b) = two_instances();
    let id = call(&a, true);
    a.update_status(&id, CallStatus::Ringing, T0)
        .expect("updated");

    let claimed = a.due_webhooks(T0, 10).expect("claimed");
    a.release_webhook(&claimed[0].id).expect("released");
    let again = b.due_webhooks(T0, 10).expect("claimed");

    assert_eq!(again, claimed);
}
