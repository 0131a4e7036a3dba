//! Unit tests of scheduled and retried calls in the store: the retry decision on a status callback, late callbacks
//! of an earlier attempt, a refused attempt, waiting calls and what the cap and the budget count.

use std::collections::HashSet;

use time::macros::datetime;

use super::*;
use crate::calls::Direction;
use crate::calls::schedule::RetryOn;
use crate::calls::store::test_db::{TestStore, both_backends};

fn outbound() -> NewCall {
    NewCall {
        direction: Direction::OutboundApi,
        from: "+15550100".into(),
        to: "+15550199".into(),
        call_sid: None,
        instructions: Some("Ask about the kettle.".into()),
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
        engine: None,
    }
}

const T0: OffsetDateTime = datetime!(2026-01-15 10:00 UTC);

fn scheduled(store: &CallStore, retry: Option<RetryPlan>, window: Option<&str>) -> String {
    let id = crate::calls::store::new_call_id();
    store
        .create_scheduled(
            &id,
            &outbound(),
            &NewSchedule {
                retry,
                not_before: None,
                call_window: window.map(str::to_owned),
                send_digits: Some("ww12".into()),
                first_attempt_at: T0,
            },
        )
        .expect("stored");
    id
}

fn retry_busy(max_attempts: u32) -> Option<RetryPlan> {
    Some(RetryPlan {
        max_attempts,
        backoff_s: 60,
        retry_on: vec![RetryOn::Busy],
    })
}

/// Starts the next attempt at `at` and gives it `call_sid`, as the scheduler does.
fn attempt(store: &CallStore, id: &str, call_sid: &str, at: OffsetDateTime) {
    assert!(store.begin_attempt(id, at).expect("begun"));
    store.set_call_sid(id, call_sid).expect("CallSid stored");
}

fn status(store: &CallStore, id: &str) -> CallStatus {
    store.get(id).expect("read").expect("present").status
}

both_backends! {
    fn a_scheduled_call_is_due_at_its_first_attempt_time_only(store) {
        let id = scheduled(&store, None, None);

        let next = store.next_attempt_due().expect("read");
        let before = store
            .due_attempts(T0 - time::Duration::seconds(1))
            .expect("read");
        let at = store.due_attempts(T0).expect("read");

        assert_eq!(next, Some(T0));
        assert!(before.is_empty());
        assert_eq!(at, std::slice::from_ref(&id));
        let view = store.get(&id).expect("read").expect("present");
        assert_eq!(view.status, CallStatus::Scheduled);
        assert_eq!(view.status_timeline.len(), 1);
        assert_eq!(view.schedule.next_attempt_at, Some(T0));
        assert_eq!(view.schedule.retry, None, "no retry was asked for");
        assert_eq!(
            store.scheduled_send_digits(&id).expect("read").as_deref(),
            Some("ww12")
        );
    }
}

both_backends! {
    fn a_busy_attempt_with_attempts_left_waits_the_backoff_in_retry_pending(store) {
        let id = scheduled(&store, retry_busy(2), None);
        attempt(&store, &id, "CA1", T0);

        let applied = store
            .apply_status_callback(
                "CA1",
                CallStatus::Busy,
                None,
                T0 + time::Duration::seconds(5),
            )
            .expect("applied");

        assert_eq!(applied, Some((id.clone(), true)));
        let view = store.get(&id).expect("read").expect("present");
        assert_eq!(view.status, CallStatus::RetryPending);
        assert_eq!(view.ended_at, None, "the call is not over");
        assert_eq!(
            view.schedule.next_attempt_at,
            Some(T0 + time::Duration::seconds(65))
        );
        assert_eq!(
            view.schedule.attempts[0].result.as_deref(),
            Some("busy, retried")
        );
        assert!(
            store
                .due_attempts(T0 + time::Duration::seconds(64))
                .expect("read")
                .is_empty()
        );
        assert_eq!(
            store
                .due_attempts(T0 + time::Duration::seconds(65))
                .expect("read"),
            [id]
        );
    }
}

both_backends! {
    fn the_last_attempt_or_an_unlisted_result_ends_the_call(store) {
        let last = scheduled(&store, retry_busy(1), None);
        let unlisted = scheduled(&store, retry_busy(3), None);
        attempt(&store, &last, "CA1", T0);
        attempt(&store, &unlisted, "CA2", T0);

        store
            .apply_status_callback("CA1", CallStatus::Busy, None, T0)
            .expect("applied");
        store
            .apply_status_callback("CA2", CallStatus::NoAnswer, None, T0)
            .expect("applied");

        assert_eq!(status(&store, &last), CallStatus::Busy);
        assert_eq!(status(&store, &unlisted), CallStatus::NoAnswer);
    }
}

both_backends! {
    fn a_retry_is_moved_into_the_call_window(store) {
        let id = scheduled(&store, retry_busy(2), Some("09:00-18:00 Europe/Berlin"));
        // 16:59:30 Berlin in winter: the backoff ends after the window closes.
        let late = datetime!(2026-01-15 15:59:30 UTC);
        attempt(&store, &id, "CA1", late);

        store
            .apply_status_callback("CA1", CallStatus::Busy, None, late)
            .expect("applied");

        let view = store.get(&id).expect("read").expect("present");
        assert_eq!(
            view.schedule.next_attempt_at,
            Some(datetime!(2026-01-15 16:00:30 UTC)),
            "still inside the window: 17:00:30 Berlin"
        );
        let id2 = scheduled(&store, retry_busy(2), Some("09:00-18:00 Europe/Berlin"));
        let closing = datetime!(2026-01-15 16:59:30 UTC);
        attempt(&store, &id2, "CA2", closing);
        store
            .apply_status_callback("CA2", CallStatus::Busy, None, closing)
            .expect("applied");
        let view = store.get(&id2).expect("read").expect("present");
        assert_eq!(
            view.schedule.next_attempt_at,
            Some(datetime!(2026-01-16 08:00 UTC)),
            "the next morning, 09:00 Berlin"
        );
    }
}

both_backends! {
    fn a_late_callback_of_an_earlier_attempt_moves_only_that_attempt(store) {
        let id = scheduled(&store, retry_busy(2), None);
        attempt(&store, &id, "CA1", T0);
        store
            .apply_status_callback("CA1", CallStatus::Busy, None, T0)
            .expect("applied");

        let while_waiting = store
            .apply_status_callback("CA1", CallStatus::Ringing, None, T0)
            .expect("applied");
        attempt(&store, &id, "CA2", T0 + time::Duration::seconds(60));
        let after = store
            .apply_status_callback("CA1", CallStatus::Completed, None, T0)
            .expect("applied");
        store
            .apply_status_callback("CA2", CallStatus::Ringing, None, T0)
            .expect("applied");

        assert_eq!(while_waiting, Some((id.clone(), false)));
        assert_eq!(after, Some((id.clone(), false)));
        let view = store.get(&id).expect("read").expect("present");
        assert_eq!(view.status, CallStatus::Ringing);
        assert_eq!(view.call_sid.as_deref(), Some("CA2"));
        let attempts: Vec<(Option<&str>, CallStatus)> = view
            .schedule
            .attempts
            .iter()
            .map(|a| (a.call_sid.as_deref(), a.status))
            .collect();
        assert_eq!(
            attempts,
            [
                (Some("CA1"), CallStatus::Busy),
                (Some("CA2"), CallStatus::Ringing)
            ]
        );
    }
}

both_backends! {
    fn an_attempt_twilio_refused_is_retried_only_when_failed_is_listed(store) {
        let listed = scheduled(
            &store,
            Some(RetryPlan {
                max_attempts: 2,
                backoff_s: 30,
                retry_on: vec![RetryOn::Failed],
            }),
            None,
        );
        let unlisted = scheduled(&store, retry_busy(2), None);
        let error = CallError {
            code: Some(21211),
            message: "Invalid 'To' Phone Number".into(),
        };
        store.begin_attempt(&listed, T0).expect("begun");
        store.begin_attempt(&unlisted, T0).expect("begun");

        let retried = store.attempt_refused(&listed, &error, T0).expect("stored");
        let ended = store
            .attempt_refused(&unlisted, &error, T0)
            .expect("stored");

        assert!(retried);
        assert!(!ended);
        assert_eq!(status(&store, &listed), CallStatus::RetryPending);
        assert_eq!(status(&store, &unlisted), CallStatus::Failed);
        let view = store.get(&unlisted).expect("read").expect("present");
        assert_eq!(view.error, Some(error));
        assert_eq!(
            view.schedule.attempts[0].result.as_deref(),
            Some("failed: Invalid 'To' Phone Number")
        );
    }
}

both_backends! {
    fn a_waiting_call_is_ended_or_deferred_but_a_started_one_is_not(store) {
        let waiting = scheduled(&store, None, None);
        let deferred = scheduled(&store, None, None);
        let started = scheduled(&store, None, None);
        store.begin_attempt(&started, T0).expect("begun");

        let canceled = store
            .end_waiting(&waiting, CallStatus::Canceled, None, T0)
            .expect("written");
        let moved = store
            .defer_attempt(&deferred, T0 + time::Duration::seconds(30))
            .expect("written");
        let not_canceled = store
            .end_waiting(&started, CallStatus::Canceled, None, T0)
            .expect("written");
        let not_begun_again = store.begin_attempt(&waiting, T0).expect("read");

        assert!(canceled && moved);
        assert!(!not_canceled && !not_begun_again);
        assert_eq!(status(&store, &waiting), CallStatus::Canceled);
        assert_eq!(status(&store, &started), CallStatus::Queued);
        assert_eq!(
            store
                .due_attempts(T0 + time::Duration::seconds(29))
                .expect("read"),
            Vec::<String>::new()
        );
        assert_eq!(
            store
                .due_attempts(T0 + time::Duration::seconds(30))
                .expect("read"),
            [deferred]
        );
    }
}

both_backends! {
    fn the_budget_counts_attempts_and_the_cap_counts_a_ringing_attempt_by_its_start(store) {
        let id = scheduled(&store, retry_busy(3), None);
        let midnight = OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT);
        let before_attempts = store.count_outbound_created_since(midnight).expect("count");
        let now = OffsetDateTime::now_utc();
        attempt(&store, &id, "CA1", now);
        store
            .apply_status_callback("CA1", CallStatus::Busy, None, now)
            .expect("applied");
        attempt(&store, &id, "CA2", now);
        store
            .apply_status_callback("CA2", CallStatus::Ringing, None, now)
            .expect("applied");

        assert_eq!(
            before_attempts, 0,
            "a scheduled call counts by its attempts"
        );
        assert_eq!(
            store.count_outbound_created_since(midnight).expect("count"),
            2
        );
        assert_eq!(
            store
                .count_outbound_ringing_since(now - time::Duration::seconds(1))
                .expect("count"),
            1
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
fn two_instances_claim_each_due_attempt_exactly_once() {
    let (a, b) = two_instances();
    let waiting: HashSet<String> = (0..2 * DUE_BATCH + 10)
        .map(|_| scheduled(&a, retry_busy(2), None))
        .collect();

    let claimed: Vec<String> = std::thread::scope(|scope| {
        let schedulers: Vec<_> = [&*a, &b]
            .into_iter()
            .map(|store| {
                scope.spawn(move || {
                    let mut claimed = Vec::new();
                    loop {
                        let due = store.due_attempts(T0).expect("claimed");
                        if due.is_empty() {
                            return claimed;
                        }
                        for id in &due {
                            assert!(
                                store.begin_attempt(id, T0).expect("begun"),
                                "{id} begun twice"
                            );
                        }
                        claimed.extend(due);
                    }
                })
            })
            .collect();
        schedulers
            .into_iter()
            .flat_map(|s| s.join().expect("no scheduler panicked"))
            .collect()
    });

    let unique: HashSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), unique.len(), "a call was claimed twice");
    assert_eq!(unique, waiting);
    for id in &waiting {
        let view = a.get(id).expect("read").expect("present");
        assert_eq!(
            (view.status, view.schedule.attempts.len()),
            (CallStatus::Queued, 1)
        );
    }
}

#[test]
fn a_claimed_attempt_is_due_for_another_instance_only_once_its_claim_expires() {
    let (a, b) = two_instances();
    let id = scheduled(&a, None, None);
    let claim = crate::calls::store::pg::scheduling::ATTEMPT_CLAIM;
    let later = T0 + claim + time::Duration::seconds(30);

    let claimed = a.due_attempts(T0).expect("claimed");
    let meanwhile = b
        .due_attempts(T0 + time::Duration::seconds(1))
        .expect("read");
    let after_expiry = b.due_attempts(T0 + claim).expect("claimed");
    let deferred = b.defer_attempt(&id, later).expect("deferred");
    let before_new_time = a
        .due_attempts(later - time::Duration::seconds(1))
        .expect("read");
    let at_new_time = a.due_attempts(later).expect("claimed");

    assert_eq!(claimed, std::slice::from_ref(&id));
    assert!(meanwhile.is_empty(), "{meanwhile:?}");
    assert_eq!(
        after_expiry,
        std::slice::from_ref(&id),
        "the claiming instance died"
    );
    assert!(deferred);
    assert!(before_new_time.is_empty());
    assert_eq!(at_new_time, [id], "deferring released the claim");
}

#[test]
fn a_released_attempt_is_due_again_at_once_for_any_instance() {
    let (a, b) = two_instances();
    let id = scheduled(&a, None, None);

    let claimed = a.due_attempts(T0).expect("claimed");
    a.release_attempt(&id).expect("released");
    let again = b.due_attempts(T0).expect("claimed");

    assert_eq!(claimed, std::slice::from_ref(&id));
    assert_eq!(again, [id]);
}
