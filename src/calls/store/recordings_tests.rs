//! Tests of the recordings part of the store: the callback stored with its due time, retries keeping the first due
//! time, the due list, deletion and postponement.

use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::calls::Direction;
use crate::calls::model::NewCall;
use crate::calls::store::test_db::both_backends;
use crate::twilio::recording::{RecordingStatus, RecordingUpdate};

const SID: &str = "RE0123456789abcdef0123456789abcdef";

/// Stores a call to the store, to be recorded or not, and returns its id.
fn with_call(store: &CallStore, record: bool) -> String {
    let call = store
        .create(&NewCall {
            direction: Direction::Inbound,
            from: "+15550100001".into(),
            to: "+15550100002".into(),
            call_sid: Some("CA0123456789abcdef0123456789abcdef".into()),
            instructions: None,
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: None,
            metadata: None,
            answering: Default::default(),
            record,
            webhook_url: None,
            outcome_schema: None,
            mcp_servers: None,
            mode: Default::default(),
            max_cost_usd: None,
            engine: None,
        })
        .expect("stored");
    call.id
}

fn completed(duration_s: u64) -> RecordingUpdate {
    RecordingUpdate {
        sid: SID.into(),
        status: RecordingStatus::Completed,
        url: Some(format!(
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/{SID}"
        )),
        duration_s: Some(duration_s),
        channels: Some(2),
        source: Some("OutboundAPI".into()),
        error_code: None,
    }
}

fn at(s: u64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

both_backends! {
    fn a_call_to_be_recorded_says_so_and_one_not_to_be_does_not(store) {
    let recorded = with_call(&store, true);
        let other = store
            .create(&NewCall {
                direction: Direction::Inbound,
                from: "+1".into(),
                to: "+2".into(),
                call_sid: None,
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
                engine: None,
            })
            .expect("stored");

        let view = store.get(&recorded).expect("reads").expect("exists");

        assert!(view.record);
        assert!(!other.record);
        assert!(view.recordings.is_empty());
    }
}

both_backends! {
    fn a_completed_recording_is_stored_with_its_url_duration_and_due_time(store) {
    let id = with_call(&store, true);

        let new = store
            .apply_recording_update(&id, &completed(42), at(0), Some(Duration::from_secs(30)))
            .expect("stored");
        let view = store.get(&id).expect("reads").expect("exists");

        assert!(new);
        let recording = &view.recordings[0];
        assert_eq!(recording.sid, SID);
        assert_eq!(recording.status, "completed");
        assert_eq!(recording.duration_s, Some(42));
        assert_eq!(recording.channels, Some(2));
        assert!(recording.url.as_deref().is_some_and(|u| u.ends_with(SID)));
        assert_eq!(recording.delete_due_at, Some(at(30)));
        assert_eq!(recording.deleted_at, None);
    }
}

both_backends! {
    fn a_retried_callback_keeps_the_first_due_time_and_adds_no_recording(store) {
    let id = with_call(&store, true);
        store
            .apply_recording_update(&id, &completed(42), at(0), Some(Duration::from_secs(30)))
            .expect("stored");

        let new = store
            .apply_recording_update(&id, &completed(42), at(10), Some(Duration::from_secs(30)))
            .expect("stored again");
        let view = store.get(&id).expect("reads").expect("exists");

        assert!(!new);
        assert_eq!(view.recordings.len(), 1);
        assert_eq!(view.recordings[0].delete_due_at, Some(at(30)));
    }
}

both_backends! {
    fn without_a_retention_nothing_is_due(store) {
    let id = with_call(&store, true);
        store
            .apply_recording_update(&id, &completed(5), at(0), None)
            .expect("stored");

        assert_eq!(store.next_recording_due().expect("reads"), None);
        assert!(
            store
                .recordings_due(at(1_000_000), 10)
                .expect("reads")
                .is_empty()
        );
    }
}

both_backends! {
    fn a_recording_is_due_at_its_time_and_not_after_it_was_deleted(store) {
    let id = with_call(&store, true);
        store
            .apply_recording_update(&id, &completed(5), at(0), Some(Duration::from_secs(30)))
            .expect("stored");

        let early = store.recordings_due(at(29), 10).expect("reads");
        let due = store.recordings_due(at(30), 10).expect("reads");
        let first = store.mark_recording_deleted(SID, at(31)).expect("written");
        let again = store.mark_recording_deleted(SID, at(32)).expect("written");
        let after = store.recordings_due(at(1000), 10).expect("reads");
        let view = store.get(&id).expect("reads").expect("exists");

        assert!(early.is_empty());
        assert_eq!(
            due,
            [DueRecording {
                sid: SID.into(),
                call_id: id.clone(),
                failed_attempts: 0
            }]
        );
        assert!(first && !again);
        assert!(after.is_empty());
        assert_eq!(store.next_recording_due().expect("reads"), None);
        assert_eq!(view.recordings[0].status, "deleted");
        assert_eq!(view.recordings[0].deleted_at, Some(at(31)));
    }
}

both_backends! {
    fn a_failed_deletion_is_postponed_with_its_error_and_counted(store) {
    let id = with_call(&store, true);
        store
            .apply_recording_update(&id, &completed(5), at(0), Some(Duration::from_secs(30)))
            .expect("stored");

        store
            .postpone_recording_deletion(SID, at(90), "Twilio did not answer in time")
            .expect("written");
        let view = store.get(&id).expect("reads").expect("exists");

        assert_eq!(store.next_recording_due().expect("reads"), Some(at(90)));
        assert!(store.recordings_due(at(60), 10).expect("reads").is_empty());
        assert_eq!(
            store.recordings_due(at(90), 10).expect("reads")[0].failed_attempts,
            1
        );
        assert_eq!(
            view.recordings[0].delete_error.as_deref(),
            Some("Twilio did not answer in time")
        );
    }
}

both_backends! {
    fn a_recording_for_an_unknown_call_is_refused(store) {
    with_call(&store, true);

        let refused = store.apply_recording_update("call_unknown", &completed(5), at(0), None);

        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{refused:?}"
        );
    }
}

#[test]
fn two_instances_claim_each_due_recording_exactly_once() {
    let a = crate::calls::store::test_db::TestStore::postgres();
    let b = a.reopen();
    let id = with_call(&a, true);
    let sids: std::collections::HashSet<String> = (0..30)
        .map(|n| {
            let update = RecordingUpdate {
                sid: format!("RE{n:032x}"),
                ..completed(5)
            };
            a.apply_recording_update(&id, &update, at(0), Some(Duration::from_secs(30)))
                .expect("stored");
            update.sid
        })
        .collect();

    let claimed: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = [&*a, &b]
            .into_iter()
            .map(|store| {
                scope.spawn(move || {
                    let mut claimed = Vec::new();
                    loop {
                        let due = store.recordings_due(at(30), 4).expect("claimed");
                        if due.is_empty() {
                            return claimed;
                        }
                        for recording in &due {
                            store
                                .mark_recording_deleted(&recording.sid, at(31))
                                .expect("written");
                        }
                        claimed.extend(due.into_iter().map(|r| r.sid));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("no worker panicked"))
            .collect()
    });
    let unique: std::collections::HashSet<String> = claimed.iter().cloned().collect();

    assert_eq!(claimed.len(), unique.len(), "a recording was claimed twice");
    assert_eq!(unique, sids);
    assert_eq!(a.next_recording_due().expect("reads"), None);
}

#[test]
fn a_claimed_recording_is_due_for_another_instance_only_once_its_claim_expires() {
    let a = crate::calls::store::test_db::TestStore::postgres();
    let b = a.reopen();
    let id = with_call(&a, true);
    a.apply_recording_update(&id, &completed(5), at(0), Some(Duration::from_secs(30)))
        .expect("stored");
    let claim = crate::calls::store::pg::recordings::RECORDING_CLAIM;

    let claimed = a.recordings_due(at(30), 10).expect("claimed");
    let meanwhile = b.recordings_due(at(31), 10).expect("read");
    let after_expiry = b.recordings_due(at(30) + claim, 10).expect("claimed");

    assert_eq!(claimed.len(), 1);
    assert!(meanwhile.is_empty(), "{meanwhile:?}");
    assert_eq!(after_expiry, claimed, "the claiming instance died");
}
