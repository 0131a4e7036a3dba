//! Closing records the call itself never finished: a call answered whose media stream never opened
//! ([`CallStore::close_unopened`]), and at start-up every record an earlier process left open
//! ([`CallStore::reconcile`], which returns what it closed as [`Reconciled`]), and a call whose fleet instance was lost
//! ([`CallStore::close_lost`]).

use rusqlite::{OptionalExtension as _, TransactionBehavior, params};
use time::OffsetDateTime;

use super::rows::to_ns;
use super::{CallStore, StoreError, advance_status, ctx, found, pg};
use crate::calls::model::CallStatus;
use crate::calls::{CallFailure, Direction, EndReason};

/// A record [`CallStore::reconcile`] closed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The call's id.
    pub id: String,
    /// Twilio's CallSid, when known.
    pub call_sid: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The status it was left in.
    pub was: CallStatus,
    /// The terminal status it has now: `completed` when it was answered, `canceled` when not.
    pub now: CallStatus,
}

impl CallStore {
    /// Closes a call that was answered but whose media stream never opened (its stream token expired unused): the
    /// end reason is set (unless one is stored) and the call moves to `completed`. Returns whether it changed.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] when the write fails.
    pub fn close_unopened(
        &self,
        id: &str,
        end_reason: &EndReason,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const CONTEXT: &str = "close a call whose stream never opened";
        let at_ns = to_ns(at, "end time")?;
        let end_reason = end_reason.to_string();
        let id = id.to_owned();
        if let Some(pg) = self.postgres() {
            return pg.write(CONTEXT, move |tx| {
                pg::closing::close_unopened(tx, &id, &end_reason, at_ns)
            });
        }
        self.write(CONTEXT, |tx| {
            let changed = tx
                .execute(
                    "UPDATE calls SET end_reason = COALESCE(end_reason, ?2), duration_ms = COALESCE(duration_ms, 0) \
                     WHERE id = ?1",
                    params![id, end_reason],
                )
                .map_err(ctx(CONTEXT))?;
            found(changed, &id)?;
            advance_status(tx, &id, CallStatus::Completed, at_ns)
        })
    }

    /// Closes a call whose instance was lost (its fleet lease expired while it held the call): a call not over yet
    /// moves to `failed` with the end reason `instance_lost` (unless one is stored); its turns are kept as they
    /// were written. Returns whether it changed (false for a call already over).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::Sqlite`] or [`StoreError::Postgres`] when the write fails.
    pub fn close_lost(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        const CONTEXT: &str = "close a call whose instance was lost";
        let at_ns = to_ns(at, "end time")?;
        let end_reason = EndReason::InstanceLost.to_string();
        if let Some(pg) = self.postgres() {
            let id = id.to_owned();
            return pg.write(CONTEXT, move |tx| {
                pg::closing::close_lost(tx, &id, &end_reason, at_ns)
            });
        }
        self.write(CONTEXT, |tx| {
            let status: Option<CallStatus> = tx
                .query_row("SELECT status FROM calls WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(ctx(CONTEXT))?;
            let status = status.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            if status.is_terminal() {
                return Ok(false);
            }
            tx.execute(
                "UPDATE calls SET end_reason = COALESCE(end_reason, ?2) WHERE id = ?1",
                params![id, end_reason],
            )
            .map_err(ctx(CONTEXT))?;
            advance_status(tx, id, CallStatus::Failed, at_ns)
        })
    }

    /// Closes every record an earlier process left non-terminal (it crashed, was killed or got a second signal
    /// mid-call), so that no record stays open for ever; call it at start-up, before any call of this process.
    ///
    /// - A call that was answered (inbound, or `in-progress`) becomes `completed`.
    /// - An outbound call not answered yet (`queued`, `initiated`, `ringing`) becomes `canceled`: nothing of this
    ///   process would bridge it; the caller of this function cancels it at Twilio when it can.
    ///
    /// Each gets the end reason `error:server_stopped` ([`CallFailure::ServerStopped`]) unless it has one, and keeps its stored turns; its
    /// `ended_at` is `now` (when it was closed) unless set. Returns the closed calls.
    ///
    /// On a PostgreSQL database several instances share, this closes the records of calls live on the other
    /// instances too: call it at start-up only when this instance is the only one writing the database (a fleet
    /// closes a lost instance's calls by their lease instead).
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the read or a write fails (nothing is changed then).
    pub fn reconcile(&self, now: OffsetDateTime) -> Result<Vec<Reconciled>, StoreError> {
        const CONTEXT: &str = "close the calls an earlier process left open";
        let now_ns = to_ns(now, "now")?;
        if let Some(pg) = self.postgres() {
            return pg.write(CONTEXT, move |tx| pg::closing::reconcile(tx, now_ns));
        }
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(ctx(CONTEXT))?;
        let open: Vec<(String, Option<String>, Direction, CallStatus)> = tx
            .prepare(
                "SELECT id, call_sid, direction, status FROM calls WHERE status IN (?1, ?2, ?3, ?4) \
                 ORDER BY created_at_ns",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        CallStatus::Queued,
                        CallStatus::Initiated,
                        CallStatus::Ringing,
                        CallStatus::InProgress
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )?
                .collect()
            })
            .map_err(ctx(CONTEXT))?;
        let server_stopped = EndReason::Error(CallFailure::ServerStopped).to_string();
        let mut closed = Vec::with_capacity(open.len());
        for (id, call_sid, direction, was) in open {
            let now_status = if direction == Direction::Inbound || was == CallStatus::InProgress {
                CallStatus::Completed
            } else {
                CallStatus::Canceled
            };
            tx.execute(
                "UPDATE calls SET end_reason = COALESCE(end_reason, ?2) WHERE id = ?1",
                params![id, server_stopped],
            )
            .map_err(ctx(CONTEXT))?;
            advance_status(&tx, &id, now_status, now_ns)?;
            closed.push(Reconciled {
                id,
                call_sid,
                direction,
                was,
                now: now_status,
            });
        }
        tx.commit().map_err(ctx(CONTEXT))?;
        Ok(closed)
    }
}

#[cfg(test)]
mod lost_instance_tests {
    use time::OffsetDateTime;

    use crate::calls::model::{CallStatus, NewCall};
    use crate::calls::store::StoreError;
    use crate::calls::store::test_db::both_backends;
    use crate::calls::{Direction, EndReason, Speaker, Turn};

    fn inbound() -> NewCall {
        NewCall {
            engine: None,
            direction: Direction::Inbound,
            from: "+14155550100".into(),
            to: "+14155552671".into(),
            call_sid: Some("CA0123".into()),
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

    both_backends! {
        fn a_lost_call_in_progress_becomes_failed_instance_lost_keeping_its_turns(store) {
            let now = OffsetDateTime::now_utc();
            let call = store.create(&inbound()).expect("stored");
            store.update_status(&call.id, CallStatus::InProgress, now).expect("answered");
            let turn = Turn {
                speaker: Speaker::Caller,
                text: "Hi, I'd like to book a table.".into(),
                at: now,
                offset_ms: 1200,
                interrupted: false,
                item_id: None,
            };
            store.append_turn(&call.id, &turn).expect("turn stored");

            let changed = store.close_lost(&call.id, now).expect("closed");
            let again = store.close_lost(&call.id, now).expect("a second close is harmless");

            let read = store.get(&call.id).expect("read").expect("found");
            assert!(changed);
            assert!(!again, "a call already over is left as it is");
            assert_eq!(read.status, CallStatus::Failed);
            assert_eq!(read.end_reason, Some(EndReason::InstanceLost.to_string()));
            assert_eq!(read.transcript.len(), 1);
            assert_eq!(read.transcript[0].text, turn.text);
        }
    }

    both_backends! {
        fn closing_an_unknown_lost_call_is_not_found(store) {
            let result = store.close_lost("call_nope", OffsetDateTime::now_utc());

            assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        }
    }
}
