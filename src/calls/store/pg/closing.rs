//! Closing records on PostgreSQL, mirroring `store/closing.rs`: a call whose media stream never opened, a call whose
//! instance was lost, and at start-up every record left open.

use postgres::GenericClient;

use super::calls::{advance_status, lock_call};
use super::ctx;
use crate::calls::model::CallStatus;
use crate::calls::store::Reconciled;
use crate::calls::store::StoreError;
use crate::calls::{CallFailure, Direction, EndReason};

/// Closes a call that was answered but whose media stream never opened (see `CallStore::close_unopened`).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the write fails.
pub(in crate::calls::store) fn close_unopened(
    c: &mut impl GenericClient,
    id: &str,
    end_reason: &str,
    at_ns: i64,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "close a call whose stream never opened";
    lock_call(c, id)?;
    c.execute(
        "UPDATE calls SET end_reason = COALESCE(end_reason, $2), duration_ms = COALESCE(duration_ms, 0) \
         WHERE id = $1",
        &[&id, &end_reason],
    )
    .map_err(ctx(CONTEXT))?;
    advance_status(c, id, CallStatus::Completed, at_ns)
}

/// Closes a call whose fleet instance was lost (see `CallStore::close_lost`): `failed`, end reason `end_reason`
/// unless one is stored, turns untouched. Returns whether it changed (false for a call already over).
///
/// # Errors
///
/// [`StoreError::NotFound`] for an unknown id, [`StoreError::Postgres`] when the write fails.
pub(in crate::calls::store) fn close_lost(
    c: &mut impl GenericClient,
    id: &str,
    end_reason: &str,
    at_ns: i64,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "close a call whose instance was lost";
    if lock_call(c, id)?.is_terminal() {
        return Ok(false);
    }
    c.execute(
        "UPDATE calls SET end_reason = COALESCE(end_reason, $2) WHERE id = $1",
        &[&id, &end_reason],
    )
    .map_err(ctx(CONTEXT))?;
    advance_status(c, id, CallStatus::Failed, at_ns)
}

/// Closes every record left non-terminal (see `CallStore::reconcile`), locking them first: a record another
/// writer closes meanwhile is left to it.
///
/// # Errors
///
/// [`StoreError::Postgres`] when the read or a write fails (nothing is changed then).
pub(in crate::calls::store) fn reconcile(
    c: &mut impl GenericClient,
    now_ns: i64,
) -> Result<Vec<Reconciled>, StoreError> {
    const CONTEXT: &str = "close the calls an earlier process left open";
    let open = c
        .query(
            "SELECT id, call_sid, direction, status FROM calls WHERE status IN ($1, $2, $3, $4) \
             ORDER BY created_at_ns, created_seq FOR UPDATE",
            &[
                &CallStatus::Queued,
                &CallStatus::Initiated,
                &CallStatus::Ringing,
                &CallStatus::InProgress,
            ],
        )
        .map_err(ctx(CONTEXT))?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<_, String>("id")?,
                row.try_get::<_, Option<String>>("call_sid")?,
                row.try_get::<_, Direction>("direction")?,
                row.try_get::<_, CallStatus>("status")?,
            ))
        })
        .collect::<Result<Vec<_>, postgres::Error>>()
        .map_err(ctx(CONTEXT))?;
    let server_stopped = EndReason::Error(CallFailure::ServerStopped).to_string();
    let mut closed = Vec::with_capacity(open.len());
    for (id, call_sid, direction, was) in open {
        let now_status = if direction == Direction::Inbound || was == CallStatus::InProgress {
            CallStatus::Completed
        } else {
            CallStatus::Canceled
        };
        c.execute(
            "UPDATE calls SET end_reason = COALESCE(end_reason, $2) WHERE id = $1",
            &[&id, &server_stopped],
        )
        .map_err(ctx(CONTEXT))?;
        advance_status(c, &id, now_status, now_ns)?;
        closed.push(Reconciled {
            id,
            call_sid,
            direction,
            was,
            now: now_status,
        });
    }
    Ok(closed)
}
