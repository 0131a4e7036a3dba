//! Scheduled and retried outbound calls in the store: the plan and the next attempt's due time (`call_schedules`),
//! each attempt with its own CallSid and status (`call_attempts`), and the call's own moves between attempts.
//!
//! A scheduled call is stored `scheduled` with its first attempt's due time. When an attempt starts, the call goes
//! back to `queued` with no CallSid, an attempt row is added, and Twilio's CallSid lands on both once Twilio created
//! the call. Status callbacks move the current attempt and the call together; a terminal status the call's `retry`
//! counts (with attempts left) ends the attempt and moves the call to `retry-pending` with the next due time (the
//! backoff, then the call window) instead of ending it. A late callback of an earlier attempt moves only that
//! attempt. Every status change of the call is written by [`record_status`], like Twilio's own.

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::rows::{Ns, Unsigned, to_ns};
use super::{CallStore, StoreError, advance_status, ctx, found, record_status};
use crate::calls::model::{Attempt, CallError, CallStatus, CallView, NewCall, Schedule};
use crate::calls::schedule::{CallWindow, RetryOn, RetryPlan, retry_at};

/// How many due calls one [`CallStore::due_attempts`] returns at most.
pub const DUE_BATCH: usize = 50;

/// What a scheduled call stores besides the call itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// The request's `retry` (`None`: one attempt).
    pub retry: Option<RetryPlan>,
    /// The request's `not_before`.
    pub not_before: Option<OffsetDateTime>,
    /// The request's `call_window`, as given (checked by [`CallWindow::parse`]).
    pub call_window: Option<String>,
    /// Keys Twilio presses when the call is answered (Twilio's `SendDigits`), for every attempt.
    pub send_digits: Option<String>,
    /// When the first attempt is due.
    pub first_attempt_at: OffsetDateTime,
}

impl CallStore {
    /// Stores a new scheduled call under `id`: status `scheduled` (its timeline starts with it), its plan, and its
    /// first attempt due at `schedule.first_attempt_at`.
    ///
    /// # Errors
    /// As [`CallStore::create_with_id`]; [`StoreError::OutOfRange`] for a time outside 1677–2262.
    pub fn create_scheduled(
        &self,
        id: &str,
        call: &NewCall,
        schedule: &NewSchedule,
    ) -> Result<CallView, StoreError> {
        const CONTEXT: &str = "store a scheduled call";
        let due_ns = to_ns(schedule.first_attempt_at, "first attempt time")?;
        let not_before_ns = schedule
            .not_before
            .map(|t| to_ns(t, "not_before"))
            .transpose()?;
        let plan = schedule.retry.clone().unwrap_or_default();
        let retry_on = serde_json::to_string(&plan.retry_on).expect("a list of names serializes");
        let backoff_s = i64::try_from(plan.backoff_s)
            .map_err(|_| StoreError::OutOfRange { what: "backoff_s" })?;
        self.create_with_id(id, call)?;
        self.write(CONTEXT, |tx| {
            tx.execute(
                "UPDATE calls SET status = ?2 WHERE id = ?1",
                params![id, CallStatus::Scheduled],
            )
            .map_err(ctx(CONTEXT))?;
            tx.execute(
                "UPDATE status_changes SET status = ?2 WHERE call_id = ?1 AND seq = 0",
                params![id, CallStatus::Scheduled],
            )
            .map_err(ctx(CONTEXT))?;
            tx.execute(
                "INSERT INTO call_schedules (call_id, max_attempts, backoff_s, retry_on, retry_asked, \
                 not_before_ns, call_window, send_digits, next_attempt_at_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    plan.max_attempts,
                    backoff_s,
                    retry_on,
                    schedule.retry.is_some(),
                    not_before_ns,
                    schedule.call_window,
                    schedule.send_digits,
                    due_ns,
                ],
            )
            .map_err(ctx(CONTEXT))?;
            Ok(())
        })?;
        self.get(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// The ids of up to [`DUE_BATCH`] calls waiting for an attempt due at or before `now`, the longest due first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails.
    pub fn due_attempts(&self, now: OffsetDateTime) -> Result<Vec<String>, StoreError> {
        const CONTEXT: &str = "find the calls due for an attempt";
        let now_ns = to_ns(now, "now")?;
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.call_id FROM call_schedules s JOIN calls c ON c.id = s.call_id \
                 WHERE c.status IN (?1, ?2) AND s.next_attempt_at_ns <= ?3 \
                 ORDER BY s.next_attempt_at_ns LIMIT ?4",
            )
            .map_err(ctx(CONTEXT))?;
        let limit = i64::try_from(DUE_BATCH).expect("a small batch");
        let rows = stmt
            .query_map(
                params![
                    CallStatus::Scheduled,
                    CallStatus::RetryPending,
                    now_ns,
                    limit
                ],
                |row| row.get(0),
            )
            .map_err(ctx(CONTEXT))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(ctx(CONTEXT))
    }

    /// When the next waiting call's attempt is due; `None` when no call waits.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails.
    pub fn next_attempt_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        const CONTEXT: &str = "find the next attempt due";
        let conn = self.read()?;
        conn.query_row(
            "SELECT MIN(s.next_attempt_at_ns) FROM call_schedules s JOIN calls c ON c.id = s.call_id \
             WHERE c.status IN (?1, ?2)",
            params![CallStatus::Scheduled, CallStatus::RetryPending],
            |row| row.get::<_, Option<Ns>>(0),
        )
        .map(|ns| ns.map(|ns| ns.0))
        .map_err(ctx(CONTEXT))
    }

    /// The keys Twilio presses when a scheduled call's attempt is answered, if its request gave any.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the read fails.
    pub fn scheduled_send_digits(&self, id: &str) -> Result<Option<String>, StoreError> {
        let conn = self.read()?;
        conn.query_row(
            "SELECT send_digits FROM call_schedules WHERE call_id = ?1",
            [id],
            |row| row.get::<_, Option<String>>(0),
        )
        .optional()
        .map(Option::flatten)
        .map_err(ctx("read a scheduled call's keypresses"))
    }

    /// Starts the next attempt of a waiting call at `at`: the call goes back to `queued` without a CallSid, and
    /// an attempt row is added. Returns `false` (changing nothing) when the call no longer waits (hung up).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id; [`StoreError::Sqlite`] when the write fails.
    pub fn begin_attempt(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        const CONTEXT: &str = "start a call's attempt";
        let at_ns = to_ns(at, "attempt time")?;
        self.write(CONTEXT, |tx| {
            if !current_status(tx, id)?.is_waiting() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO call_attempts (call_id, seq, status, started_at_ns) \
                 SELECT ?1, COALESCE(MAX(seq) + 1, 0), ?2, ?3 FROM call_attempts WHERE call_id = ?1",
                params![id, CallStatus::Queued, at_ns],
            )
            .map_err(ctx(CONTEXT))?;
            tx.execute(
                "UPDATE call_schedules SET next_attempt_at_ns = NULL WHERE call_id = ?1",
                [id],
            )
            .map_err(ctx(CONTEXT))?;
            tx.execute("UPDATE calls SET call_sid = NULL WHERE id = ?1", [id])
                .map_err(ctx(CONTEXT))?;
            record_status(tx, id, CallStatus::Queued, at_ns)?;
            Ok(true)
        })
    }

    /// Moves a waiting call's next attempt to `until` (the concurrency cap was reached). Returns whether the call
    /// still waited.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id; [`StoreError::Sqlite`] when the write fails.
    pub fn defer_attempt(&self, id: &str, until: OffsetDateTime) -> Result<bool, StoreError> {
        const CONTEXT: &str = "defer a call's attempt";
        let until_ns = to_ns(until, "attempt time")?;
        self.write(CONTEXT, |tx| {
            if !current_status(tx, id)?.is_waiting() {
                return Ok(false);
            }
            tx.execute(
                "UPDATE call_schedules SET next_attempt_at_ns = ?2 WHERE call_id = ?1",
                params![id, until_ns],
            )
            .map_err(ctx(CONTEXT))?;
            Ok(true)
        })
    }

    /// Ends a waiting call with the terminal `status` at `at` (`canceled` when hung up, `failed` when the daily
    /// budget or the destination policy refused its attempt, with `error` saying why); no attempt follows. Returns
    /// `false` (changing nothing) when the call no longer waits.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id; [`StoreError::Sqlite`] when the write fails.
    pub fn end_waiting(
        &self,
        id: &str,
        status: CallStatus,
        error: Option<&CallError>,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const CONTEXT: &str = "end a waiting call";
        let at_ns = to_ns(at, "end time")?;
        self.write(CONTEXT, |tx| {
            if !current_status(tx, id)?.is_waiting() {
                return Ok(false);
            }
            if let Some(error) = error {
                set_error(tx, id, error)?;
            }
            tx.execute(
                "UPDATE call_schedules SET next_attempt_at_ns = NULL WHERE call_id = ?1",
                [id],
            )
            .map_err(ctx(CONTEXT))?;
            record_status(tx, id, status, at_ns)?;
            Ok(true)
        })
    }

    /// Twilio refused to create the current attempt's call (`error`): the attempt ends `failed`, and the call is
    /// retried if its `retry` counts `failed` and attempts are left, or ends `failed`. Returns whether a retry is
    /// scheduled.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id; [`StoreError::Sqlite`] when the write fails.
    pub fn attempt_refused(
        &self,
        id: &str,
        error: &CallError,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const CONTEXT: &str = "record a refused attempt";
        let at_ns = to_ns(at, "end time")?;
        self.write(CONTEXT, |tx| {
            set_error(tx, id, error)?;
            let seq = latest_attempt(tx, id)?;
            if let Some(seq) = seq {
                end_attempt(
                    tx,
                    id,
                    seq,
                    CallStatus::Failed,
                    at_ns,
                    &format!("failed: {}", error.message),
                )?;
            }
            if schedule_retry(tx, id, CallStatus::Failed, at_ns)? {
                return Ok(true);
            }
            advance_status(tx, id, CallStatus::Failed, at_ns)?;
            Ok(false)
        })
    }
}

/// The call's status.
fn current_status(conn: &Connection, id: &str) -> Result<CallStatus, StoreError> {
    conn.query_row("SELECT status FROM calls WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .optional()
    .map_err(ctx("read a call's status"))?
    .ok_or_else(|| StoreError::NotFound(id.to_owned()))
}

/// Records the call's error.
fn set_error(conn: &Connection, id: &str, error: &CallError) -> Result<(), StoreError> {
    let changed = conn
        .execute(
            "UPDATE calls SET error_code = ?2, error_message = ?3 WHERE id = ?1",
            params![id, error.code, error.message],
        )
        .map_err(ctx("record a call's error"))?;
    found(changed, id)
}

/// The sequence number of the call's latest attempt.
fn latest_attempt(conn: &Connection, id: &str) -> Result<Option<i64>, StoreError> {
    conn.query_row(
        "SELECT MAX(seq) FROM call_attempts WHERE call_id = ?1",
        [id],
        |row| row.get(0),
    )
    .map_err(ctx("find a call's latest attempt"))
}

/// Ends attempt `seq` with the terminal `status` at `at_ns` and its `result`.
fn end_attempt(
    conn: &Connection,
    id: &str,
    seq: i64,
    status: CallStatus,
    at_ns: i64,
    result: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE call_attempts SET status = ?3, ended_at_ns = COALESCE(ended_at_ns, ?4), result = ?5 \
         WHERE call_id = ?1 AND seq = ?2",
        params![id, seq, status, at_ns, result],
    )
    .map_err(ctx("end an attempt"))?;
    Ok(())
}

/// If the call's `retry` counts its latest attempt's end `status` and attempts are left: marks that attempt
/// retried, sets the next attempt's due time (the backoff from `at_ns`, then the call window) and moves the call to
/// `retry-pending`. Returns whether it did.
fn schedule_retry(
    conn: &Connection,
    id: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<bool, StoreError> {
    const CONTEXT: &str = "schedule a retry";
    let plan: Option<(u32, Unsigned, String, Option<String>)> = conn
        .query_row(
            "SELECT max_attempts, backoff_s, retry_on, call_window FROM call_schedules WHERE call_id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()
        .map_err(ctx(CONTEXT))?;
    let Some((max_attempts, backoff_s, retry_on, window)) = plan else {
        return Ok(false);
    };
    let retry_on: Vec<RetryOn> = serde_json::from_str(&retry_on).unwrap_or_default();
    let plan = RetryPlan {
        max_attempts,
        backoff_s: backoff_s.0,
        retry_on,
    };
    let made: u32 = conn
        .query_row(
            "SELECT COUNT(*) FROM call_attempts WHERE call_id = ?1",
            [id],
            |row| row.get(0),
        )
        .map_err(ctx(CONTEXT))?;
    if !plan.retries(status.as_str(), made) {
        return Ok(false);
    }
    let window = window.as_deref().and_then(|w| CallWindow::parse(w).ok());
    let ended_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ns))
        .map_err(|_| StoreError::OutOfRange { what: "end time" })?;
    let due_ns = to_ns(retry_at(ended_at, &plan, window.as_ref()), "retry time")?;
    conn.execute(
        "UPDATE call_attempts SET result = COALESCE(result, ?2) || ', retried' \
         WHERE call_id = ?1 AND seq = (SELECT MAX(seq) FROM call_attempts WHERE call_id = ?1)",
        params![id, status],
    )
    .map_err(ctx(CONTEXT))?;
    conn.execute(
        "UPDATE call_schedules SET next_attempt_at_ns = ?2 WHERE call_id = ?1",
        params![id, due_ns],
    )
    .map_err(ctx(CONTEXT))?;
    record_status(conn, id, CallStatus::RetryPending, at_ns)?;
    Ok(true)
}

/// The call one of whose attempts had the CallSid `call_sid` (an earlier attempt's late status callback).
pub(super) fn call_of_attempt(
    conn: &Connection,
    call_sid: &str,
) -> Result<Option<String>, StoreError> {
    conn.query_row(
        "SELECT call_id FROM call_attempts WHERE call_sid = ?1 ORDER BY started_at_ns DESC LIMIT 1",
        [call_sid],
        |row| row.get(0),
    )
    .optional()
    .map_err(ctx("find a call by an attempt's CallSid"))
}

/// A status callback for the call `id` with the CallSid `call_sid`, if it is one of the call's attempts: moves the
/// attempt forward, and decides for the call. `None` when the call has no such attempt, or when the call moves as
/// any call does ([`advance_status`]); `Some(changed)` when it was handled here: an earlier attempt's late callback
/// (the call does not change), or an end the call's `retry` counts (the call is `retry-pending`).
pub(super) fn on_attempt_status(
    conn: &Connection,
    id: &str,
    call_sid: &str,
    status: CallStatus,
    at_ns: i64,
) -> Result<Option<bool>, StoreError> {
    const CONTEXT: &str = "apply a status callback to an attempt";
    let attempt: Option<(i64, CallStatus)> = conn
        .query_row(
            "SELECT seq, status FROM call_attempts WHERE call_id = ?1 AND call_sid = ?2 \
             ORDER BY seq DESC LIMIT 1",
            params![id, call_sid],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(ctx(CONTEXT))?;
    let Some((seq, attempt_status)) = attempt else {
        return Ok(None);
    };
    if status.rank() > attempt_status.rank() {
        if status.is_terminal() {
            end_attempt(conn, id, seq, status, at_ns, status.as_str())?;
        } else {
            conn.execute(
                "UPDATE call_attempts SET status = ?3 WHERE call_id = ?1 AND seq = ?2",
                params![id, seq, status],
            )
            .map_err(ctx(CONTEXT))?;
        }
    }
    let (current_sid, call_status): (Option<String>, CallStatus) = conn
        .query_row(
            "SELECT call_sid, status FROM calls WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
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
pub(super) fn set_attempt_call_sid(
    conn: &Connection,
    id: &str,
    call_sid: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE call_attempts SET call_sid = ?2 WHERE call_id = ?1 AND call_sid IS NULL \
         AND seq = (SELECT MAX(seq) FROM call_attempts WHERE call_id = ?1)",
        params![id, call_sid],
    )
    .map_err(ctx("record an attempt's CallSid"))?;
    Ok(())
}

/// How many attempts started at or after `since_ns` (the daily budget counts them).
pub(super) fn count_attempts_since(conn: &Connection, since_ns: i64) -> Result<u64, StoreError> {
    conn.query_row(
        "SELECT COUNT(*) FROM call_attempts WHERE started_at_ns >= ?1",
        [since_ns],
        |row| row.get::<_, Unsigned>(0),
    )
    .map(|n| n.0)
    .map_err(ctx("count the attempts"))
}

/// The call's plan and attempts ([`Schedule::default`] for a call placed at once).
pub(super) fn read_schedule(conn: &Connection, id: &str) -> Result<Schedule, StoreError> {
    const CONTEXT: &str = "read a call's schedule";
    type PlanRow = (
        u32,
        Unsigned,
        String,
        bool,
        Option<Ns>,
        Option<String>,
        Option<Ns>,
    );
    let row: Option<PlanRow> = conn
        .prepare_cached(
            "SELECT max_attempts, backoff_s, retry_on, retry_asked, not_before_ns, call_window, \
             next_attempt_at_ns FROM call_schedules WHERE call_id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                ))
            })
            .optional()
        })
        .map_err(ctx(CONTEXT))?;
    let Some((max_attempts, backoff_s, retry_on, retry_asked, not_before, call_window, next)) = row
    else {
        return Ok(Schedule::default());
    };
    let attempts = conn
        .prepare_cached(
            "SELECT seq, call_sid, status, started_at_ns, ended_at_ns, result FROM call_attempts \
             WHERE call_id = ?1 ORDER BY seq",
        )
        .and_then(|mut stmt| {
            stmt.query_map([id], |row| {
                Ok(Attempt {
                    number: row.get::<_, u32>(0)?.saturating_add(1),
                    call_sid: row.get(1)?,
                    status: row.get(2)?,
                    started_at: row.get::<_, Ns>(3)?.0,
                    ended_at: row.get::<_, Option<Ns>>(4)?.map(|ns| ns.0),
                    result: row.get(5)?,
                })
            })?
            .collect()
        })
        .map_err(ctx(CONTEXT))?;
    Ok(Schedule {
        retry: retry_asked.then(|| RetryPlan {
            max_attempts,
            backoff_s: backoff_s.0,
            retry_on: serde_json::from_str(&retry_on).unwrap_or_default(),
        }),
        not_before: not_before.map(|ns| ns.0),
        call_window,
        next_attempt_at: next.map(|ns| ns.0),
        attempts,
    })
}

#[cfg(test)]
#[path = "scheduling_tests.rs"]
mod tests;
