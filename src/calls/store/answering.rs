//! What the store keeps of answering machine detection: Twilio's verdict, written when its callback arrives (the
//! first verdict stays: a retried callback changes nothing). The policy and the voicemail are written with the call
//! ([`CallStore::create_with_id`]) and its end ([`CallStore::finish`]). A first verdict queues the call's
//! `call.answered_by` webhook in the same transaction.

use rusqlite::params;

use super::{CallStore, StoreError, ctx, pg};
use crate::twilio::amd::AnsweredBy;

impl CallStore {
    /// Records Twilio's `AnsweredBy` for the call `id` unless one is stored; returns whether it was the first.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] when the write fails.
    pub fn set_answered_by(&self, id: &str, answered_by: AnsweredBy) -> Result<bool, StoreError> {
        const CONTEXT: &str = "record an answering machine verdict";
        if let Some(pg) = self.postgres() {
            let id = id.to_owned();
            return pg.write(CONTEXT, move |tx| {
                pg::answering::set_answered_by(tx, &id, answered_by)
            });
        }
        self.write(CONTEXT, |tx| {
            super::ensure_exists(tx, id)?;
            let changed = tx
                .execute(
                    "UPDATE calls SET answered_by = ?2 WHERE id = ?1 AND answered_by IS NULL",
                    params![id, answered_by.as_str()],
                )
                .map_err(ctx(CONTEXT))?;
            if changed == 1 {
                let now_ns = super::rows::to_ns(time::OffsetDateTime::now_utc(), "now")?;
                super::outbox::on_answered_by(tx, id, answered_by, now_ns)?;
            }
            Ok(changed == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::schema::MIGRATIONS;
    use super::*;
    use crate::calls::model::{Answering, NewCall};
    use crate::calls::store::test_db::both_backends;
    use crate::calls::{CallRecord, Direction};
    use crate::twilio::amd::MachinePolicy;

    fn outbound(answering: Answering) -> NewCall {
        NewCall {
            engine: None,
            direction: Direction::OutboundApi,
            from: "+14155550100".into(),
            to: "+14155552671".into(),
            call_sid: None,
            instructions: Some("Book a table.".into()),
            greeting: None,
            voice: None,
            language: None,
            max_duration_s: None,
            metadata: None,
            answering,
            record: false,
            webhook_url: None,
            outcome_schema: None,
            mcp_servers: None,
            mode: Default::default(),
            max_cost_usd: None,
        }
    }

    both_backends! {
        fn the_policy_and_message_are_stored_with_the_call_and_the_first_verdict_stays(store) {
            let call = store
                .create(&outbound(Answering {
                    answering_machine: Some(MachinePolicy::LeaveMessage),
                    voicemail_message: Some("Please call back.".into()),
                    ..Answering::default()
                }))
                .expect("stored");

            let first = store
                .set_answered_by(&call.id, AnsweredBy::MachineEndBeep)
                .expect("written");
            let again = store
                .set_answered_by(&call.id, AnsweredBy::Human)
                .expect("written");

            let read = store.get(&call.id).expect("read").expect("found");
            assert!(first);
            assert!(!again, "a second verdict changes nothing");
            assert_eq!(
                read.answering,
                Answering {
                    answering_machine: Some(MachinePolicy::LeaveMessage),
                    voicemail_message: Some("Please call back.".into()),
                    answered_by: Some(AnsweredBy::MachineEndBeep),
                    voicemail_left: false,
                    voicemail_transcript: None,
                }
            );
        }
    }

    both_backends! {
        fn a_verdict_for_an_unknown_call_is_not_found(store) {

            let result = store.set_answered_by("call_nope", AnsweredBy::Human);

            assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        }
    }

    both_backends! {
        fn the_finished_record_stores_the_voicemail(store) {
            let call = store
                .create(&outbound(Answering::default()))
                .expect("stored");
            let mut record = CallRecord::new(
                "CA1".into(),
                Direction::OutboundApi,
                "+14155550100".into(),
                "+14155552671".into(),
            );
            record.answered_by = Some(AnsweredBy::MachineEndBeep);
            record.voicemail_left = true;
            record.voicemail_transcript = Some("Hi, this is Sam for Rivera.".into());
            record.finish(crate::calls::EndReason::VoicemailLeft, 9000);

            store.finish(&call.id, &record).expect("finished");

            let read = store.get(&call.id).expect("read").expect("found");
            assert_eq!(read.end_reason.as_deref(), Some("voicemail_left"));
            assert_eq!(read.answering.answered_by, Some(AnsweredBy::MachineEndBeep));
            assert!(read.answering.voicemail_left);
            assert_eq!(
                read.answering.voicemail_transcript.as_deref(),
                Some("Hi, this is Sam for Rivera.")
            );
        }
    }

    #[test]
    fn a_database_of_the_first_schema_opens_with_its_calls_and_no_answering_machine_data() {
        let path = std::env::temp_dir().join(format!(
            "callbridge-store-v1-{}-{}.db",
            std::process::id(),
            super::super::new_call_id()
        ));
        {
            let conn = Connection::open(&path).expect("opens");
            conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
            conn.pragma_update(None, "user_version", 1).expect("set");
            conn.execute(
                "INSERT INTO calls (id, direction, from_number, to_number, status, created_at_ns, usage) \
                 VALUES ('call_old', 'outbound-api', '+14155550100', '+14155552671', 'completed', 0, ?1)",
                [super::super::rows::usage_json(&Default::default())],
            )
            .expect("an old call");
        }

        let store = CallStore::open(&path).expect("migrates");
        let old = store.get("call_old").expect("read").expect("kept");
        let _ = std::fs::remove_file(&path);

        assert_eq!(old.answering, Answering::default());
    }
}
