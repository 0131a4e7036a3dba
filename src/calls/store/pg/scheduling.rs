//! Scheduled and retried outbound calls in PostgreSQL: the same rows and rules as the SQLite store's
//! `scheduling.rs` (whose retry decision, [`StoredPlan`], is shared), for several instances sharing one database.
//!
//! Every instance runs a scheduler, so [`due_attempts`] claims the calls it returns: it locks their schedule rows
//! with `FOR UPDATE SKIP LOCKED` and marks them `claimed_until_ns` = now + [`ATTEMPT_CLAIM`], so no other instance
//! sees them due until the attempt starts, is deferred or ends, or the claim expires (the claiming instance died).
//! The writes that read a call's status before they change it lock the call's row first (`FOR UPDATE`), where
//! SQLite relies on its single writer.

use postgres::GenericClient;
use time::OffsetDateTime;

use super::ctx;
use crate::calls::model::{Attempt, CallError, CallStatus, Schedule};
use crate::calls::schedule::RetryPlan;
use crate::calls::store::StoreError;
use crate::calls::store::rows::{Ns, Unsigned, to_ns};
use crate::calls::store::scheduling::{DUE_BATCH, NewSchedule, StoredPlan, stored_plan};

/// A condition on a `calls` row (SQL, no parameters): true for a call placed at once, without a schedule (the
/// daily outbound budget counts such a call by its creation, a scheduled one by its attempts).
pub(in crate::calls::store) const PLACED_AT_ONCE: &str =
    "NOT EXISTS (SELECT 1 FROM call_schedules s WHERE s.call_id = calls.id)";

/// An expression on a `calls` row (SQL, no parameters): when its latest attempt started, or when it was created
/// (nanoseconds since the Unix epoch).
pub(in crate::calls::store) const LATEST_START_NS: &str = "COALESCE((SELECT MAX(a.started_at_ns) FROM call_attempts a \
     WHERE a.call_id = calls.id), created_at_ns)";

/// How long a call returned by [`due_attempts`] stays claimed by the instance that read it: longer than the checks
/// and the write that start its attempt.
pub const ATTEMPT_CLAIM: time::Duration = time::Duration::seconds(60);

/// The statuses of a call waiting for its next attempt.
fn waiting() -> [&'static str; 2] {
    [
        CallStatus::Scheduled.as_str(),
        CallStatus::RetryPending.as_str(),
    ]
}

/// The plan part of [`crate::calls::store::CallStore::create_scheduled`], after the call itself was stored: the
/// call and its first timeline entry become `scheduled`, and its `call_schedules` row is written.
///
/// # Errors
/// [`StoreError::Postgres`] when a write fails; [`StoreError::OutOfRange`] for a time outside 1677–2262.
pub fn store_schedule(
    conn: &mut impl GenericClient,
    id: &str,
    schedule: &NewSchedule,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "store a scheduled call";
    let due_ns = to_ns(schedule.first_attempt_at, "first attempt time")?;
    let not_before_ns = schedule
        .not_before
        .map(|t| to_ns(t, "not_before"))
        .transpose()?;
    let (plan, retry_on, backoff_s) = stored_plan(schedule)?;
    let scheduled = CallStatus::Scheduled.as_str();
    conn.execute(
        "UPDATE calls SET status = $2 WHERE id = $1",
        &[&id, &scheduled],
    )
    .map_err(ctx(CONTEXT))?;
    conn.execute(
        "UPDATE status_changes SET status = $2 WHERE call_id = $1 AND seq = 0",
        &[&id, &scheduled],
    )
    .map_err(ctx(CONTEXT))?;
    conn.execute(
        "INSERT INTO call_schedules (call_id, max_attempts, backoff_s, retry_on, retry_asked, \
         not_before_ns, call_window, send_digits, next_attempt_at_ns) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &id,
            &i64::from(plan.max_attempts),
            &backoff_s,
            &retry_on,
            &schedule.retry.is_some(),
            &not_before_ns,
            &schedule.call_window,
            &schedule.send_digits,
            &due_ns,
        ],
    )
    .map_err(ctx(CONTEXT))?;
    Ok(())
}

/// [`crate::calls::store::CallStore::due_attempts`], claiming what it returns (see the module docs): the ids of up
/// to [`DUE_BATCH`] waiting calls due at or before `now` and claimed by no one, the longest due first.
///
/// # Errors
/// [`StoreError::Postgres`] when the read or the claim fails; [`StoreError::OutOfRange`] for a time outside
/// 1677–2262.
pub fn due_attempts(
    conn: &mut impl GenericClient,
    now: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    const CONTEXT: &str = "claim the calls due for an attempt";
    let now_ns = to_ns(now, "now")?;
    let until_ns = to_ns(now + ATTEMPT_CLAIM, "claim time")?;
    let limit = i64::try_from(DUE_BATCH).expect("a small batch");
    let ids = conn
        .query(
            "SELECT s.call_id FROM call_schedules s JOIN calls c ON c.id = s.call_id \
             WHERE c.status = ANY($1) AND s.next_attempt_at_ns <= $2 \
             AND (s.claimed_until_ns IS NULL OR s.claimed_until_ns <= $2) \
             ORDER BY s.next_attempt_at_ns, s.call_id LIMIT $3 FOR UPDATE OF s SKIP LOCKED",
            &[&waiting().as_slice(), &now_ns, &limit],
        )
        .map_err(ctx(CONTEXT))?
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ctx(CONTEXT))?;
    if !ids.is_empty() {
        conn.execute(
            "UPDATE call_schedules SET claimed_until_ns = $2 WHERE call_id = ANY($1)",
            &[&ids, &until_ns],
        )
        .map_err(ctx(CONTEXT))?;
    }
    Ok(ids)
}

/// [`crate::calls::store::CallStore::release_attempt`]: the call is claimed by no one.
///
/// # Errors
/// [`StoreError::Postgres`] when the write fails.
pub fn release_attempt(conn: &mut impl GenericClient, id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE call_schedules SET claimed_until_ns = NULL WHERE call_id = $1",
        &[&id],
    )
    .map_err(ctx("release a call's attempt"))?;
    Ok(())
}

/// When the next waiting call's attempt is due, or its claim expires when it is claimed; `None` when no call
/// waits.
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails.
pub fn next_attempt_due(
    conn: &mut impl GenericClient,
) -> Result<Option<OffsetDateTime>, StoreError> {
    const CONTEXT: &str = "find the next attempt due";
    conn.query_one(
        "SELECT MIN(GREATEST(s.next_attempt_at_ns, s.claimed_until_ns)) AS due_ns FROM call_schedules s \
         JOIN calls c ON c.id = s.call_id WHERE c.status = ANY($1)",
        &[&waiting().as_slice()],
    )
    .and_then(|row| row.try_get::<_, Option<Ns>>("due_ns"))
    .map(|due| due.map(|ns| ns.0))
    .map_err(ctx(CONTEXT))
}

/// [`crate::calls::store::CallStore::scheduled_send_digits`].
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails.
pub fn scheduled_send_digits(
    conn: &mut impl GenericClient,
    id: &str,
) -> Result<Option<String>, StoreError> {
    conn.query_opt(
        "SELECT send_digits FROM call_schedules WHERE call_id = $1",
        &[&id],
    )
    .and_then(|row| {
        row.map(|row| row.try_get::<_, Option<String>>(0))
            .transpose()
    })
    .map(Option::flatten)
    .map_err(ctx("read a scheduled call's keypresses"))
}

/// [`crate::calls::store::CallStore::begin_attempt`]; also releases the call's claim.
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown id; [`StoreError::Postgres`] when the write fails.
pub fn begin_attempt(
    conn: &mut impl GenericClient,
    id: &str,
    at: OffsetDateTime,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "start a call's attempt";
    let at_ns = to_ns(at, "attempt time")?;
    if !super::calls::lock_call(conn, id)?.is_waiting() {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO call_attempts (call_id, seq, status, started_at_ns) \
         SELECT $1, COALESCE(MAX(seq) + 1, 0), $2, $3 FROM call_attempts WHERE call_id = $1",
        &[&id, &CallStatus::Queued.as_str(), &at_ns],
    )
    .map_err(ctx(CONTEXT))?;
    conn.execute(
        "UPDATE call_schedules SET next_attempt_at_ns = NULL, claimed_until_ns = NULL WHERE call_id = $1",
        &[&id],
    )
    .map_err(ctx(CONTEXT))?;
    conn.execute("UPDATE calls SET call_sid = NULL WHERE id = $1", &[&id])
        .map_err(ctx(CONTEXT))?;
    super::calls::record_status(conn, id, CallStatus::Queued, at_ns)?;
    Ok(true)
}

/// [`crate::calls::store::CallStore::defer_attempt`]; also releases the call's claim.
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown id; [`StoreError::Postgres`] when the write fails.
pub fn defer_attempt(
    conn: &mut impl GenericClient,
    id: &str,
    until: OffsetDateTime,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "defer a call's attempt";
    let until_ns = to_ns(until, "attempt time")?;
    if !super::calls::lock_call(conn, id)?.is_waiting() {
        return Ok(false);
    }
    conn.execute(
        "UPDATE call_schedules SET next_attempt_at_ns = $2, claimed_until_ns = NULL WHERE call_id = $1",
        &[&id, &until_ns],
    )
    .map_err(ctx(CONTEXT))?;
    Ok(true)
}

/// [`crate::calls::store::CallStore::end_waiting`].
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown id; [`StoreError::Postgres`] when the write fails.
pub fn end_waiting(
    conn: &mut impl GenericClient,
    id: &str,
    status: CallStatus,
    error: Option<&CallError>,
    at: OffsetDateTime,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "end a waiting call";
    let at_ns = to_ns(at, "end time")?;
    if !super::calls::lock_call(conn, id)?.is_waiting() {
        return Ok(false);
    }
    if let Some(error) = error {
        set_error(conn, id, error)?;
    }
    conn.execute(
        "UPDATE call_schedules SET next_attempt_at_ns = NULL, claimed_until_ns = NULL WHERE call_id = $1",
        &[&id],
    )
    .map_err(ctx(CONTEXT))?;
    super::calls::record_status(conn, id, status, at_ns)?;
    Ok(true)
}

/// [`crate::calls::store::CallStore::attempt_refused`].
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown id; [`StoreError::Postgres`] when the write fails.
pub fn attempt_refused(
    conn: &mut impl GenericClient,
    id: &str,
    error: &CallError,
    at: OffsetDateTime,
) -> Result<bool, StoreError> {
    let at_ns = to_ns(at, "end time")?;
    super::calls::lock_call(conn, id)?;
    set_error(conn, id, error)?;
    if let Some(seq) = latest_attempt(conn, id)? {
        end_attempt(
            conn,
            id,
            seq,
            CallStatus::Failed,
            at_ns,
            &format!("failed: {}", error.message),
        )?;
    }
    if schedule_retry(conn, id, CallStatus::Failed, at_ns)? {
        return Ok(true);
    }
    super::calls::advance_status(conn, id, CallStatus::Failed, at_ns)?;
    Ok(false)
}

/// Records the call's error.
fn set_error(conn: &mut impl GenericClient, id: &str, error: &CallError) -> Result<(), StoreError> {
    let changed = conn
        .execute(
            "UPDATE calls SET error_code = $2, error_message = $3 WHERE id = $1",
            &[&id, &error.code.map(i64::from), &error.message],
        )
        .map_err(ctx("record a call's error"))?;
    if changed == 0 {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    Ok(())
}

/// The sequence number of the call's latest attempt.
fn latest_attempt(conn: &mut impl GenericClient, id: &str) -> Result<Option<i64>, StoreError> {
    conn.query_one(
        "SELECT MAX(seq) FROM call_attempts WHERE call_id = $1",
        &[&id],
    )
    .and_then(|row| row.try_get(0))
    .map_err(ctx("find a call's latest attempt"))
}

/// Ends attempt `seq` with the terminal `status` at `at_ns` and its `result`.
fn end_attempt(
    conn: &mut impl GenericClient,
    id: &str,
    seq: i64,
    status: CallStatus,
    at_ns: i64,
    result: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE call_attempts SET status = $3, ended_at_ns = COALESCE(ended_at_ns, $4), result = $5 \
         WHERE call_id = $1 AND seq = $2",
        &[&id, &seq, &status.as_str(), &at_ns, &result],
    )
    .map_err(ctx("end an attempt"))?;
    Ok(())
}

/// If the call's `retry` counts its latest attempt's end `status` and attempts are left: marks that attempt
/// retried, sets the next attempt's due time (releasing any claim) and moves the call to `retry-pending`. Returns
/// whether it did.
fn schedule_retry(
    conn: &mut impl GenericClient,
    id: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "schedule a retry";
    let Some(row) = conn
        .query_opt(
            "SELECT max_attempts, backoff_s, retry_on, call_window, \
             (SELECT COUNT(*) FROM call_attempts WHERE call_id = $1) AS made \
             FROM call_schedules WHERE call_id = $1",
            &[&id],
        )
        .map_err(ctx(CONTEXT))?
    else {
        return Ok(false);
    };
    let read = || -> Result<(u64, u64, String, Option<String>, u64), postgres::Error> {
        Ok((
            row.try_get::<_, Unsigned>("max_attempts")?.0,
            row.try_get::<_, Unsigned>("backoff_s")?.0,
            row.try_get("retry_on")?,
            row.try_get("call_window")?,
            row.try_get::<_, Unsigned>("made")?.0,
        ))
    };
    let (max_attempts, backoff_s, retry_on, window, made) = read().map_err(ctx(CONTEXT))?;
    let plan = StoredPlan {
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        backoff_s,
        retry_on: &retry_on,
        window: window.as_deref(),
    };
    let made = u32::try_from(made).unwrap_or(u32::MAX);
    let Some(due_ns) = plan.retry_due_ns(made, status, at_ns)? else {
        return Ok(false);
    };
    conn.execute(
        "UPDATE call_attempts SET result = COALESCE(result, $2) || ', retried' \
         WHERE call_id = $1 AND seq = (SELECT MAX(seq) FROM call_attempts WHERE call_id = $1)",
        &[&id, &status.as_str()],
    )
    .map_err(ctx(CONTEXT))?;
    conn.execute(
        "UPDATE call_schedules SET next_attempt_at_ns = $2, claimed_until_ns = NULL WHERE call_id = $1",
        &[&id, &due_ns],
    )
    .map_err(ctx(CONTEXT))?;
    super::calls::record_status(conn, id, CallStatus::RetryPending, at_ns)?;
    Ok(true)
}

/// The call one of whose attempts had the CallSid `call_sid` (an earlier attempt's late status callback).
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails.
pub(in crate::calls::store) fn call_of_attempt(
    conn: &mut impl GenericClient,
    call_sid: &str,
) -> Result<Option<String>, StoreError> {
    conn.query_opt(
        "SELECT call_id FROM call_attempts WHERE call_sid = $1 ORDER BY started_at_ns DESC LIMIT 1",
        &[&call_sid],
    )
    .and_then(|row| row.map(|row| row.try_get(0)).transpose())
    .map_err(ctx("find a call by an attempt's CallSid"))
}

/// A status callback for the call `id` with the CallSid `call_sid`, if it is one of the call's attempts, as the
/// SQLite store's `on_attempt_status`: `None` when the call moves as any call does, `Some(changed)` when it was
/// handled here. The call's row is locked first.
///
/// # Errors
/// [`StoreError::Postgres`] when a read or a write fails.
pub(in crate::calls::store) fn on_attempt_status(
    conn: &mut impl GenericClient,
    id: &str,
    call_sid: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<Option<bool>, StoreError> {
    const CONTEXT: &str = "apply a status callback to an attempt";
    let call_status = super::calls::lock_call(conn, id)?;
    let attempt = conn
        .query_opt(
            "SELECT seq, status FROM call_attempts WHERE call_id = $1 AND call_sid = $2 \
             ORDER BY seq DESC LIMIT 1",
            &[&id, &call_sid],
        )
        .and_then(|row| {
            row.map(|row| {
                Ok((
                    row.try_get::<_, i64>("seq")?,
                    row.try_get::<_, CallStatus>("status")?,
                ))
            })
            .transpose()
        })
        .map_err(ctx(CONTEXT))?;
    let Some((seq, attempt_status)) = attempt else {
        return Ok(None);
    };
    if status.rank() > attempt_status.rank() {
        if status.is_terminal() {
            end_attempt(conn, id, seq, status, at_ns, status.as_str())?;
        } else {
            conn.execute(
                "UPDATE call_attempts SET status = $3 WHERE call_id = $1 AND seq = $2",
                &[&id, &seq, &status.as_str()],
            )
            .map_err(ctx(CONTEXT))?;
        }
    }
    let current_sid: Option<String> = conn
        .query_one("SELECT call_sid FROM calls WHERE id = $1", &[&id])
        .and_then(|row| row.try_get(0))
        .map_err(ctx(CONTEXT))?;
    if current_sid.as_deref() != Some(call_sid) || call_status.is_waiting() {
        return Ok(Some(false));
    }
    if status.is_terminal()
        && status.rank() > call_status.rank()
        && schedule_retry(conn, id, status, at_ns)?
    {
        return Ok(Some(true));
    }
    Ok(None)
}

/// Records Twilio's CallSid on the call's latest attempt, if it has none yet.
///
/// # Errors
/// [`StoreError::Postgres`] when the write fails.
pub(in crate::calls::store) fn set_attempt_call_sid(
    conn: &mut impl GenericClient,
    id: &str,
    call_sid: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE call_attempts SET call_sid = $2 WHERE call_id = $1 AND call_sid IS NULL \
         AND seq = (SELECT MAX(seq) FROM call_attempts WHERE call_id = $1)",
        &[&id, &call_sid],
    )
    .map_err(ctx("record an attempt's CallSid"))?;
    Ok(())
}

/// How many attempts started at or after `since_ns` (the daily budget counts them).
///
/// # Errors
/// [`StoreError::Postgres`] when the read fails.
pub(in crate::calls::store) fn count_attempts_since(
    conn: &mut impl GenericClient,
    since_ns: i64,
) -> Result<u64, StoreError> {
    conn.query_one(
        "SELECT COUNT(*) FROM call_attempts WHERE started_at_ns >= $1",
        &[&since_ns],
    )
    .and_then(|row| row.try_get::<_, i64>(0))
    .map(|n| u64::try_from(n).unwrap_or(0))
    .map_err(ctx("count the attempts"))
}

/// The call's plan and attempts ([`Schedule::default`] for a call placed at once).
///
/// # Errors
/// [`StoreError::Postgres`] when a read fails or a stored value is invalid.
pub(in crate::calls::store) fn read_schedule(
    conn: &mut impl GenericClient,
    id: &str,
) -> Result<Schedule, StoreError> {
    const CONTEXT: &str = "read a call's schedule";
    let Some(plan) = conn
        .query_opt(
            "SELECT max_attempts, backoff_s, retry_on, retry_asked, not_before_ns, call_window, \
             next_attempt_at_ns FROM call_schedules WHERE call_id = $1",
            &[&id],
        )
        .map_err(ctx(CONTEXT))?
    else {
        return Ok(Schedule::default());
    };
    let attempts = conn
        .query(
            "SELECT seq, call_sid, status, started_at_ns, ended_at_ns, result FROM call_attempts \
             WHERE call_id = $1 ORDER BY seq",
            &[&id],
        )
        .map_err(ctx(CONTEXT))?;
    let read = || -> Result<Schedule, postgres::Error> {
        let retry = plan
            .try_get::<_, bool>("retry_asked")?
            .then(|| -> Result<RetryPlan, postgres::Error> {
                Ok(RetryPlan {
                    max_attempts: u32::try_from(plan.try_get::<_, Unsigned>("max_attempts")?.0)
                        .unwrap_or(u32::MAX),
                    backoff_s: plan.try_get::<_, Unsigned>("backoff_s")?.0,
                    retry_on: serde_json::from_str(plan.try_get("retry_on")?).unwrap_or_default(),
                })
            })
            .transpose()?;
        let attempts = attempts
            .iter()
            .map(|row| {
                Ok(Attempt {
                    number: u32::try_from(row.try_get::<_, Unsigned>("seq")?.0)
                        .unwrap_or(u32::MAX)
                        .saturating_add(1),
                    call_sid: row.try_get("call_sid")?,
                    status: row.try_get("status")?,
                    started_at: row.try_get::<_, Ns>("started_at_ns")?.0,
                    ended_at: row.try_get::<_, Option<Ns>>("ended_at_ns")?.map(|ns| ns.0),
                    result: row.try_get("result")?,
                })
            })
            .collect::<Result<_, postgres::Error>>()?;
        Ok(Schedule {
            retry,
            not_before: plan
                .try_get::<_, Option<Ns>>("not_before_ns")?
                .map(|ns| ns.0),
            call_window: plan.try_get("call_window")?,
            next_attempt_at: plan
                .try_get::<_, Option<Ns>>("next_attempt_at_ns")?
                .map(|ns| ns.0),
            attempts,
        })
    };
    read().map_err(ctx(CONTEXT))
}
